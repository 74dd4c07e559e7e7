package consulacl

import (
	"errors"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/rootkey"
	"github.com/openssi/openssi/internal/rpc"
)

// The constants here mirror those of the packages that use the keys and
// services; a change there must change the policy too.
func TestMirrorsTheDaemons(t *testing.T) {
	if MaxNodeNumber != membership.MaxNodeNumber {
		t.Errorf("MaxNodeNumber %d, membership says %d", MaxNodeNumber, membership.MaxNodeNumber)
	}
	if KVPrefix != consul.Prefix {
		t.Errorf("KVPrefix %q, consul.Prefix %q", KVPrefix, consul.Prefix)
	}
	if ServicePrefix != rpc.ServicePrefix {
		t.Errorf("ServicePrefix %q, rpc.ServicePrefix %q", ServicePrefix, rpc.ServicePrefix)
	}
	if LVSServicePrefix != lvsdspec.ServicePrefix {
		t.Errorf("LVSServicePrefix %q, lvsdspec.ServicePrefix %q", LVSServicePrefix, lvsdspec.ServicePrefix)
	}
	var names []string
	for _, d := range daemons.All {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != strings.Join(Daemons, ",") {
		t.Errorf("Daemons %v, internal/daemons.All has %v", Daemons, names)
	}
}

// rules parses the HCL NodeRules writes (one `kind "subject" { policy = "p" }`
// block per rule) into "kind subject" -> policy.
func rules(t *testing.T, hcl string) map[string]string {
	t.Helper()
	out := map[string]string{}
	lines := strings.Split(hcl, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 3 || f[2] != "{" || i+2 >= len(lines) || lines[i+2] != "}" {
			t.Fatalf("line %d: not a rule block: %q", i+1, l)
		}
		p := strings.Fields(lines[i+1])
		if len(p) != 3 || p[0] != "policy" || p[1] != "=" {
			t.Fatalf("line %d: not a policy line: %q", i+2, lines[i+1])
		}
		key := f[0] + " " + strings.Trim(f[1], `"`)
		if _, dup := out[key]; dup {
			t.Fatalf("rule %s given twice", key)
		}
		out[key] = strings.Trim(p[2], `"`)
		i += 2
	}
	return out
}

func TestNodeRules(t *testing.T) {
	common := map[string]string{
		"node node2":                          "write",
		"agent node2":                         "read",
		"node_prefix ":                        "read",
		"service_prefix openssi-":             "read",
		"service openssi-clmsd":               "write",
		"service openssi-clmsd.node2":         "write",
		"service openssi-dlmd":                "write",
		"service openssi-dlmd.node2":          "write",
		"service openssi-vprocd":              "write",
		"service openssi-vprocd.node2":        "write",
		"service openssi-initfailover":        "write",
		"service openssi-initfailover.node2":  "write",
		"service openssi-cfsd":                "write",
		"service openssi-cfsd.node2":          "write",
		"session node2":                       "write",
		"key_prefix openssi/":                 "read",
		"key_prefix openssi/dlm/":             "write",
		"key_prefix openssi/vproc/loadlevel/": "write",
		"key_prefix openssi/keepalive/":       "write",
		"service_prefix openssi-lvs-":         "write",
		"key_prefix openssi/lvs/":             "write",
	}
	for _, tc := range []struct {
		name   string
		number int
		extra  map[string]string
	}{
		{"node2", 2, map[string]string{
			"key openssi/clms/nodes/2":   "write",
			"key openssi/clms/alive/2":   "write",
			"key openssi/clms/leaving/2": "write",
			"key openssi/clms/view":      "write",
		}},
		{"node2", 0, map[string]string{"key_prefix openssi/clms/": "write"}},
	} {
		hcl, err := NodeRules(tc.name, tc.number)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for k, v := range common {
			want[k] = v
		}
		for k, v := range tc.extra {
			want[k] = v
		}
		got := rules(t, hcl)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s/%d: rule %q = %q, want %q", tc.name, tc.number, k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s/%d: unexpected rule %q = %q", tc.name, tc.number, k, v)
			}
		}
	}
}

// Node 1's policy names no key of node 12 nor node 10: exact keys, not
// prefixes, so "openssi/clms/alive/1" does not cover ".../alive/12".
func TestNodeRulesExactKeys(t *testing.T) {
	hcl, err := NodeRules("node1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range rules(t, hcl) {
		if strings.HasPrefix(k, "key_prefix openssi/clms") && v == "write" {
			t.Errorf("pinned node 1 has a write prefix on the membership: %s", k)
		}
	}
}

func TestNodeRulesRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		number int
		want   error
	}{
		{"", 1, ErrNodeName},
		{"node\"1", 1, ErrNodeName},
		{"node 1", 1, ErrNodeName},
		{"node1.example.com", 1, ErrNodeName},
		{"-node1", 1, ErrNodeName},
		{"node\n1", 1, ErrNodeName},
		{strings.Repeat("a", 64), 1, ErrNodeName},
		{"node1", -1, ErrNodeNumber},
		{"node1", MaxNodeNumber + 1, ErrNodeNumber},
	} {
		if _, err := NodeRules(tc.name, tc.number); !errors.Is(err, tc.want) {
			t.Errorf("NodeRules(%q, %d) = %v, want %v", tc.name, tc.number, err, tc.want)
		}
	}
	for _, ok := range []string{"node1", "n", "Node_2", "a-b", strings.Repeat("a", 63)} {
		if _, err := NodeRules(ok, MaxNodeNumber); err != nil {
			t.Errorf("NodeRules(%q) = %v", ok, err)
		}
	}
}

func TestNodeService(t *testing.T) {
	if got := NodeService("openssi-dlmd", "node2"); got != "openssi-dlmd.node2" {
		t.Fatalf("NodeService = %q", got)
	}
}

// The root token writes the node's pins and nothing else, where
// internal/rootkey puts them; the daemons' token writes none of them.
func TestRootRules(t *testing.T) {
	hcl, err := RootRules("Node2")
	if err != nil {
		t.Fatal(err)
	}
	got := rules(t, hcl)
	want := map[string]string{"key_prefix openssi/rootkeys/node2/": "write"}
	if len(got) != len(want) || got["key_prefix openssi/rootkeys/node2/"] != "write" {
		t.Fatalf("RootRules = %v, want %v", got, want)
	}
	if p := KVPrefix + rootkey.NodePrefix("Node2"); RootKeys("Node2") != p {
		t.Errorf("RootKeys = %q, rootkey's prefix %q", RootKeys("Node2"), p)
	}
	key, err := rootkey.Key("Node2", "openssi-vprocd")
	if err != nil || !strings.HasPrefix(KVPrefix+key, RootKeys("Node2")) {
		t.Errorf("rootkey.Key = %q, %v: not under %q", key, err, RootKeys("Node2"))
	}
	for _, number := range []int{0, 2} {
		hcl, err := NodeRules("node2", number)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range rules(t, hcl) {
			kind, subject, _ := strings.Cut(k, " ")
			if v != "write" || !strings.HasPrefix(kind, "key") {
				continue
			}
			if strings.HasPrefix(RootKeys("node2"), subject) && (kind == "key_prefix" || subject == RootKeys("node2")) {
				t.Errorf("the daemons' token (number %d) may write the root keys: %s = %s", number, k, v)
			}
		}
	}
	if _, err := RootRules("node1.example"); !errors.Is(err, ErrNodeName) {
		t.Errorf("RootRules of a bad name: %v", err)
	}
	if RootPolicyName("node2") == PolicyName("node2") {
		t.Error("the root policy has the daemons' policy's name")
	}
}
