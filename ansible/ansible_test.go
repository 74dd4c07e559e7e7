// Package ansible tests the Ansible roles and playbooks of this directory:
// the linters CI runs on them, and that they lay down what the project
// ships (every setting of openssi.yaml, the tuned gossip profile). It holds
// no Go code of its own.
package ansible

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/packaging"
)

// Playbooks are the playbooks an administrator runs.
var Playbooks = []string{"site.yml", "add-node.yml", "upgrade.yml", "remove-node.yml"}

// needTool skips the test when tool is missing, or fails it under CI,
// which installs it (build/deps.sh ansible).
func needTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err == nil {
		return
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s not found: CI installs it (build/deps.sh ansible)", tool)
	}
	t.Skipf("%s not found: apt-get install ansible-core ansible-lint yamllint (build/deps.sh ansible)", tool)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	needTool(t, name)
	cmd := exec.Command(name, args...)
	// ansible-lint and ansible-playbook write their caches under HOME.
	cmd.Env = append(os.Environ(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_NOCOLOR=1", "NO_COLOR=1", "ANSIBLE_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestYamllint(t *testing.T) {
	run(t, "yamllint", "--strict", ".")
}

func TestAnsibleLint(t *testing.T) {
	// The production profile comes from .ansible-lint.
	run(t, "ansible-lint", "--offline", "--nocolor")
}

func TestSyntaxCheck(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inventory.yml")
	if err := os.WriteFile(inv, []byte("all:\n  children:\n    openssi:\n      hosts:\n        node1:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range Playbooks {
		t.Run(p, func(t *testing.T) { run(t, "ansible-playbook", "--syntax-check", "-i", inv, p) })
	}
}

// readYAML reads a YAML file into a map.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// leaves flattens a YAML tree into dotted paths.
func leaves(prefix string, v any, out map[string]any) {
	if m, ok := v.(map[string]any); ok {
		for k, c := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			leaves(p, c, out)
		}
		return
	}
	out[prefix] = v
}

// settingLine is a setting of the role's openssi.yaml template:
// `key: {{ variable [| int] | to_json }}`.
var settingLine = regexp.MustCompile(`^(\s*)([a-z_]+): \{\{ (openssi_[a-z_]+)( \| int)? \| to_json \}\}$`)

// roleChanges are the settings the role deliberately sets otherwise than the
// shipped file: the Consul agent's socket and the node's token file (as the
// lab and packaging/README.md do), and the pinned node number.
var roleChanges = map[string]any{
	"cluster.consul.address":    "unix:///run/consul/http.sock",
	"cluster.consul.token_file": "/etc/openssi/consul.token",
	"clmsd.node_number":         1,
}

// TestOpenSSIYAML renders the openssi role's template with the role's
// defaults and compares it with the openssi.yaml the package ships: every
// setting is there, under a variable of its own, at the shipped value
// unless roleChanges says otherwise. A setting added to a daemon's
// description fails this test until the role has it.
func TestOpenSSIYAML(t *testing.T) {
	defaults := readYAML(t, "roles/openssi/defaults/main.yml")
	// The role's own derived defaults, as a one-node inventory makes them.
	defaults["openssi_cluster_consul_address"] = "unix:///run/consul/http.sock"
	defaults["openssi_clmsd_node_number"] = 1
	tmpl, err := os.ReadFile("roles/openssi/templates/openssi.yaml.j2")
	if err != nil {
		t.Fatal(err)
	}
	var rendered bytes.Buffer
	vars := map[string]bool{}
	for i, line := range strings.Split(string(tmpl), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || line == "" || strings.HasSuffix(line, ":") {
			rendered.WriteString(line + "\n")
			continue
		}
		m := settingLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("openssi.yaml.j2:%d: %q is not `key: {{ openssi_variable | to_json }}`", i+1, line)
		}
		v, ok := defaults[m[3]]
		if !ok {
			t.Errorf("openssi.yaml.j2:%d: %s has no default in defaults/main.yml", i+1, m[3])
			continue
		}
		vars[m[3]] = true
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rendered.WriteString(m[1] + m[2] + ": " + string(j) + "\n")
	}
	var got, want map[string]any
	if err := yaml.Unmarshal(rendered.Bytes(), &got); err != nil {
		t.Fatalf("rendered template: %v\n%s", err, rendered.String())
	}
	if err := yaml.Unmarshal(packaging.ShippedConfig(), &want); err != nil {
		t.Fatal(err)
	}
	g, w := map[string]any{}, map[string]any{}
	leaves("", got, g)
	leaves("", want, w)
	for k, v := range roleChanges {
		w[k] = v
	}
	var missing, extra, differ []string
	for k, wv := range w {
		gv, ok := g[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !reflect.DeepEqual(normalize(gv), normalize(wv)):
			differ = append(differ, k+": role "+jsonString(gv)+", shipped "+jsonString(wv))
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(differ)
	if len(missing)+len(extra)+len(differ) > 0 {
		t.Errorf("the openssi role's openssi.yaml differs from the shipped one:\nmissing (add openssi_<section>_<key> to defaults, template and README): %v\nnot shipped: %v\nother values: %v", missing, extra, differ)
	}
	// Every setting variable is documented in the role's README.
	readme, err := os.ReadFile("roles/openssi/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for v := range vars {
		if !strings.Contains(string(readme), "`"+v+"`") {
			t.Errorf("roles/openssi/README.md does not document %s", v)
		}
	}
}

// normalize makes YAML's ints and JSON's floats compare equal.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestTunedGossip checks that the consul role's openssi gossip profile is
// the one the tests and the lab use (consulagent.TunedSettings).
func TestTunedGossip(t *testing.T) {
	d := readYAML(t, "roles/consul/defaults/main.yml")
	tuned, ok := d["consul_tuned"].(map[string]any)
	if !ok {
		t.Fatal("roles/consul/defaults/main.yml: no consul_tuned map")
	}
	s := consulagent.TunedSettings()
	want := map[string]any{
		"probe_interval":   s.ProbeInterval.String(),
		"probe_timeout":    s.ProbeTimeout.String(),
		"gossip_interval":  s.GossipInterval.String(),
		"suspicion_mult":   s.SuspicionMult,
		"retransmit_mult":  s.RetransmitMult,
		"raft_multiplier":  s.RaftMultiplier,
		"rpc_hold_timeout": s.RPCHoldTimeout.String(),
	}
	if !reflect.DeepEqual(normalize(tuned), normalize(want)) {
		t.Errorf("consul_tuned = %v, want consulagent.TunedSettings() = %v", tuned, want)
	}
	if v, _ := d["consul_version"].(string); v != consulagent.PinnedVersion {
		t.Errorf("consul_version = %q, want the pinned %s", v, consulagent.PinnedVersion)
	}
}

// TestDocumented checks that every variable of a role's defaults is
// documented in the role's README.
func TestDocumented(t *testing.T) {
	for _, role := range []string{"consul", "openssi", "timesync"} {
		d := readYAML(t, filepath.Join("roles", role, "defaults", "main.yml"))
		readme, err := os.ReadFile(filepath.Join("roles", role, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		for v := range d {
			if !strings.Contains(string(readme), "`"+v+"`") {
				t.Errorf("roles/%s/README.md does not document %s", role, v)
			}
		}
	}
}
