package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
)

// uncomment turns the "# " lines of the example's section starting at the
// line "# --- <title> ---" into configuration, up to the next section.
func uncomment(t *testing.T, hcl, title string) string {
	t.Helper()
	var out []string
	in := false
	found := false
	for _, line := range strings.Split(hcl, "\n") {
		if strings.HasPrefix(line, "# --- ") {
			in = line == "# --- "+title+" ---"
			found = found || in
			out = append(out, line)
			continue
		}
		if in && strings.HasPrefix(line, "# ") {
			line = strings.TrimPrefix(line, "# ")
		}
		out = append(out, line)
	}
	if !found {
		t.Fatalf("the example has no section %q", title)
	}
	return strings.Join(out, "\n")
}

// TestConsulExample fills in the shipped example's placeholders (with a CA
// and server certificate made by the pinned consul's `consul tls`) and has
// `consul validate` accept it as a server's and as a client's
// configuration: ACLs deny by default, gossip is encrypted, RPC TLS is
// verified, and the HTTP API is a root-only socket.
func TestConsulExample(t *testing.T) {
	b, err := os.ReadFile("examples/consul.hcl")
	if err != nil {
		t.Fatal(err)
	}
	example := string(b)
	for _, want := range []string{`default_policy           = "deny"`, `down_policy              = "extend-cache"`,
		`http = "unix:///run/consul/http.sock"`, `mode  = "0600"`, "verify_incoming        = true",
		"verify_server_hostname = true", "encrypt                 =", "ssi consul policy", "/etc/openssi/consul.token",
		"ssi consul policy --root", "/etc/openssi/consul-root.token"} {
		if !strings.Contains(example, want) {
			t.Errorf("the example lacks %q", want)
		}
	}
	consultest.Need(t)
	bin, err := consulagent.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("tls", "ca", "create")
	run("tls", "cert", "create", "-server", "-dc", "dc1")
	secret, err := consulagent.NewSecretID()
	if err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer(
		"<node name: letters, digits, '-'>", "node1",
		"<datacenter>", "dc1",
		"<this node's cluster address>", "10.0.0.1",
		"<server 1 address>", "10.0.0.1", "<server 2 address>", "10.0.0.2", "<server 3 address>", "10.0.0.3",
		"<gossip key>", "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
		"<agent token SecretID>", secret,
		"<management token>", secret,
		"/etc/consul.d/tls/consul-agent-ca.pem", filepath.Join(dir, "consul-agent-ca.pem"),
		"/etc/consul.d/tls/<dc>-server-consul-N.pem", filepath.Join(dir, "dc1-server-consul-0.pem"),
		"/etc/consul.d/tls/<dc>-server-consul-N-key.pem", filepath.Join(dir, "dc1-server-consul-0-key.pem"),
		"/opt/consul", filepath.Join(dir, "data"),
	)
	for _, role := range []string{"On a server", "On a client"} {
		hcl := fill.Replace(uncomment(t, example, role))
		if role == "On a server" {
			hcl = strings.Replace(hcl, "# initial_management", "initial_management", 1)
		}
		for _, line := range strings.Split(hcl, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, "<") {
				t.Fatalf("%s: placeholder left: %q", role, line)
			}
		}
		file := filepath.Join(dir, strings.ReplaceAll(role, " ", "-")+".hcl")
		if err := os.WriteFile(file, []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
		run("validate", file)
	}
}
