package lab

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func bareState(n int) *State {
	s := &State{Bridge: "labbr0", Subnet: "10.77.0", Bare: true, SSH: &SSHFiles{Key: "/var/lib/openssi-lab/ssh/id_ed25519", KnownHosts: "/var/lib/openssi-lab/ssh/known_hosts"}}
	for i := 1; i <= n; i++ {
		s.Nodes = append(s.Nodes, NodeState{Name: "node" + strconv.Itoa(i), IP: "10.77.0." + strconv.Itoa(10+i), Server: i <= 3})
	}
	return s
}

func hostsOf(g inventoryGroup) []string {
	var h []string
	for name := range g.Hosts {
		h = append(h, name)
	}
	sort.Strings(h)
	return h
}

func TestInventoryGroups(t *testing.T) {
	for _, c := range []struct {
		nodes            int
		servers, clients []string
	}{
		{1, []string{"node1"}, nil},
		{3, []string{"node1", "node2", "node3"}, nil},
		{4, []string{"node1", "node2", "node3"}, []string{"node4"}},
		{5, []string{"node1", "node2", "node3"}, []string{"node4", "node5"}},
	} {
		b, err := Inventory(bareState(c.nodes), nil)
		if err != nil {
			t.Fatal(err)
		}
		var inv inventoryFile
		if err := yaml.Unmarshal(b, &inv); err != nil {
			t.Fatalf("%d nodes: %v\n%s", c.nodes, err, b)
		}
		g := inv.All.Children
		if len(g) != 3 {
			t.Fatalf("%d nodes: groups %v, want openssi, consul_servers, consul_clients", c.nodes, g)
		}
		if got := hostsOf(g[GroupConsulServers]); !reflect.DeepEqual(got, c.servers) {
			t.Errorf("%d nodes: consul_servers %v, want %v", c.nodes, got, c.servers)
		}
		if got := hostsOf(g[GroupConsulClients]); !reflect.DeepEqual(got, c.clients) {
			t.Errorf("%d nodes: consul_clients %v, want %v", c.nodes, got, c.clients)
		}
		all := hostsOf(g[GroupOpenSSI])
		if len(all) != c.nodes {
			t.Errorf("%d nodes: openssi has %v", c.nodes, all)
		}
		for i := 1; i <= c.nodes; i++ {
			name := "node" + strconv.Itoa(i)
			if got := g[GroupOpenSSI].Hosts[name]["ansible_host"]; got != "10.77.0."+strconv.Itoa(10+i) {
				t.Errorf("%d nodes: %s ansible_host %v", c.nodes, name, got)
			}
		}
	}
}

func TestInventoryVars(t *testing.T) {
	s := bareState(3)
	b, err := Inventory(s, map[string]any{"consul_version": "9.9.9", "openssi_extra": "x"})
	if err != nil {
		t.Fatal(err)
	}
	var inv inventoryFile
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	v := inv.All.Vars
	sv := ServedAt("10.77.0")
	for k, want := range map[string]any{
		"ansible_user":                 "root",
		"ansible_ssh_private_key_file": s.SSH.Key,
		"openssi_apt_repo_url":         "http://10.77.0.1:8077/openssi/apt",
		"openssi_repo_key_url":         "http://10.77.0.1:8077/openssi/openssi-archive-keyring.gpg",
		"consul_binary_url":            sv.ConsulBinary,
		"openssi_extra":                "x",
	} {
		if v[k] != want {
			t.Errorf("%s = %v, want %v", k, v[k], want)
		}
	}
	if got := v["consul_version"]; got != "9.9.9" {
		t.Errorf("extra vars do not override the lab's: consul_version = %v", got)
	}
	args, _ := v["ansible_ssh_common_args"].(string)
	for _, want := range []string{"UserKnownHostsFile=" + s.SSH.KnownHosts, "StrictHostKeyChecking=yes"} {
		if !strings.Contains(args, want) {
			t.Errorf("ansible_ssh_common_args %q lacks %q: host keys must be checked", args, want)
		}
	}
}

func TestInventoryRefusesLabsWithoutSSH(t *testing.T) {
	full := bareState(3)
	full.Bare, full.SSH = false, nil
	for name, s := range map[string]*State{"no lab": nil, "a full lab": full} {
		if _, err := Inventory(s, nil); err == nil {
			t.Errorf("%s: an inventory was made", name)
		} else if s == nil && !errors.Is(err, ErrNoLab) {
			t.Errorf("%s: %v, want ErrNoLab", name, err)
		}
	}
}

// TestInventoryAnsibleReadsIt has ansible-inventory parse the file, when
// it is installed (CI installs ansible-core): the groups and host
// variables as Ansible sees them.
func TestInventoryAnsibleReadsIt(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal("ansible-inventory not found: apt-get install ansible-core")
		}
		t.Skip("ansible-inventory not found (apt-get install ansible-core)")
	}
	b, err := Inventory(bareState(4), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "lab.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ansible-inventory", "-i", f, "--list")
	cmd.Env = append(os.Environ(), "ANSIBLE_LOCAL_TEMP="+dir, "ANSIBLE_HOME="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v\n%s", err, out)
	}
	var got struct {
		Meta struct {
			Hostvars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
		Servers struct{ Hosts []string } `json:"consul_servers"`
		Clients struct{ Hosts []string } `json:"consul_clients"`
		OpenSSI struct{ Hosts []string } `json:"openssi"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(got.Servers.Hosts, []string{"node1", "node2", "node3"}) || !reflect.DeepEqual(got.Clients.Hosts, []string{"node4"}) ||
		len(got.OpenSSI.Hosts) != 4 {
		t.Fatalf("groups as Ansible reads them: servers %v, clients %v, openssi %v", got.Servers.Hosts, got.Clients.Hosts, got.OpenSSI.Hosts)
	}
	if h := got.Meta.Hostvars["node4"]; h["ansible_host"] != "10.77.0.14" || h["ansible_user"] != "root" {
		t.Fatalf("node4's variables as Ansible reads them: %v", h)
	}
}
