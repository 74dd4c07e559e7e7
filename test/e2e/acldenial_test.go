package e2e

import "testing"

func TestACLDenial(t *testing.T) {
	for _, c := range []struct {
		line string
		want bool
	}{
		{`level=warning msg="registering: Unexpected response code: 403 (Permission denied: token with AccessorID 'x' lacks permission 'service:write' on \"openssi-dlmd\")"`, true},
		{`level=error msg="Unexpected response code: 403 (ACL not found)"`, true},
		{`level=warning msg="watch: Permission denied"`, true},
		{`level=info msg="joined the cluster" address=10.77.15.2 name=node1 node=1 session=5e1b4032-77a0-2c9f-0b8e-a4039e2c1f40`, false},
		{`level=info msg="recovery done: granting" took=1.403215ms`, false},
		{`level=info msg="started" cpid=4194403 pid=403`, false},
		{`level=warning msg="Unexpected response code: 500 (rpc error: No cluster leader)"`, false},
	} {
		if got := aclDenial(c.line); got != c.want {
			t.Errorf("aclDenial(%q) = %v, want %v", c.line, got, c.want)
		}
	}
}
