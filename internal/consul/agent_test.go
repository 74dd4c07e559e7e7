package consul

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestServerName(t *testing.T) {
	members := []*api.AgentMember{
		{Name: "n1", Addr: "10.0.0.1", Tags: map[string]string{"role": "consul", "port": "8300"}},
		{Name: "n2", Addr: "10.0.0.2", Tags: map[string]string{"role": "consul", "port": "8300"}},
		{Name: "c1", Addr: "10.0.0.3", Tags: map[string]string{"role": "node"}},
		{Name: "v6", Addr: "fd00::4", Tags: map[string]string{"role": "consul", "port": "8300"}},
	}
	for _, tc := range []struct{ addr, want string }{
		{"10.0.0.2:8300", "n2"},
		{"[fd00::4]:8300", "v6"},
		{"10.0.0.2:8301", ""}, // the gossip port is not the Raft one
		{"10.0.0.3:8300", ""}, // a client never leads
		{"", ""},
	} {
		if got := ServerName(members, tc.addr); got != tc.want {
			t.Errorf("ServerName(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
