//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/lab"
)

// consulSocket is the agent's HTTP API in a lab node (lab.ConsulSocket;
// spelled out so that this file also builds, and fails, against a lab
// from before Consul was locked down).
const consulSocket = "/run/consul/http.sock"

// probeResult is a line of test/e2e/consulprobe.
type probeResult struct {
	Addr   string `json:"addr"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	Error  string `json:"error"`
	Body   string `json:"body"`
}

// useful reports whether a probe got something out of Consul: a success
// with a body that is not empty ({} and [] are what the ACLs leave of a
// listing).
func (r probeResult) useful() bool {
	if r.Status < 200 || r.Status > 299 {
		return false
	}
	switch strings.TrimSpace(r.Body) {
	case "", "{}", "[]", "null", "false":
		return false
	}
	return true
}

func buildProbe(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consulprobe")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/e2e/consulprobe")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	return bin
}

// probe runs consulprobe in node with the command line prefix (e.g. a
// runuser as nobody) and returns its results, one per address and request.
func probe(t *testing.T, l *lab.Lab, node string, prefix []string, flags []string, reqs []string) []probeResult {
	t.Helper()
	args := append(append(append(append([]string{}, prefix...), "consulprobe"), flags...), reqs...)
	out, err := l.Exec(ctxFor(t, time.Minute), node, args...)
	if err != nil {
		t.Fatalf("consulprobe on %s: %v\n%s", node, err, out)
	}
	var rs []probeResult
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r probeResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("consulprobe on %s: %q: %v", node, line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// asNobody runs a command as the unprivileged user nobody with a clean
// environment (no token a root session may carry).
var asNobody = []string{"runuser", "-u", "nobody", "--", "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin"}

// TestConsulUnprivileged: a local user without privileges gets nothing
// that matters from Consul's HTTP API, whether on TCP 127.0.0.1:8500 or on
// the agent's socket: no leaf certificate (neither the service's nor the
// node's own per-node identity nor another node's), no KV read of
// openssi/, no KV write of a lockspace record, an empty catalog. Root
// without a token (the anonymous token) gets no KV, no catalog and no
// other node's leaf either: the ACLs deny by default.
func TestConsulUnprivileged(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	checkAllUp(t, five, 5)
	bin := buildProbe(t)
	const node, other = "node4", "node2" // node4 runs a Consul client agent
	installFile(t, five, node, bin, "/usr/local/bin/consulprobe")
	reqs := []string{
		"GET /v1/agent/connect/ca/leaf/openssi-dlmd",
		"GET /v1/agent/connect/ca/leaf/openssi-dlmd." + node,
		"GET /v1/agent/connect/ca/leaf/openssi-dlmd." + other,
		"GET /v1/kv/openssi/?recurse=true",
		"GET /v1/kv/openssi/clms/view",
		"PUT /v1/kv/openssi/dlm/lockspaces/e2eprobe",
		"GET /v1/catalog/services",
		"GET /v1/catalog/nodes",
		"GET /v1/health/service/openssi-dlmd",
		"GET /v1/agent/members",
	}
	rs := probe(t, five, node, asNobody, nil, reqs)
	if len(rs) != 2*len(reqs) {
		t.Fatalf("consulprobe gave %d results, want %d", len(rs), 2*len(reqs))
	}
	for _, r := range rs {
		if r.useful() {
			t.Errorf("as nobody, %s %s on %s: %d %.200s", r.Method, r.Path, r.Addr, r.Status, r.Body)
		} else {
			t.Logf("as nobody, %s %s on %s: refused (%d %s)", r.Method, r.Path, r.Addr, r.Status, r.Error)
		}
	}

	// Root without a token, on the socket: the anonymous token. (The
	// agent serves a leaf it has cached to any token, which is why its
	// socket is root's only; openssi-dlmd and this node's own identity are
	// left out here.)
	anon := []string{reqs[2], reqs[3], reqs[4], reqs[5], reqs[6], reqs[7], reqs[8]}
	for _, r := range probe(t, five, node, []string{"/usr/bin/env", "-u", "CONSUL_HTTP_TOKEN"}, []string{"-addrs", "unix:" + consulSocket}, anon) {
		if r.useful() || r.Status == 0 {
			t.Errorf("as root without a token, %s %s: %d %s %.200s", r.Method, r.Path, r.Status, r.Error, r.Body)
		}
	}
	// The probe does see what there is to see with the management token
	// (root sessions of the lab carry it).
	for _, r := range probe(t, five, node, nil, []string{"-addrs", "unix:" + consulSocket, "-token-from-env"}, []string{"GET /v1/catalog/services"}) {
		if !r.useful() || !strings.Contains(r.Body, "openssi-dlmd") {
			t.Errorf("with the management token, the catalog: %d %s %.200s", r.Status, r.Error, r.Body)
		}
	}
}

// TestConsulEncrypted: gossip is encrypted on every node, the servers' RPC takes TLS only (verified names, verified
// clients; the clients get their certificates with auto_encrypt), ACLs deny
// by default, and a plaintext RPC to a server's port 8300 is dropped.
func TestConsulEncrypted(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	bin := buildProbe(t)
	for _, n := range five.State().Nodes {
		installFile(t, five, n.Name, bin, "/usr/local/bin/consulprobe")
		rs := probe(t, five, n.Name, nil, []string{"-addrs", "unix:" + consulSocket, "-token-from-env"}, []string{"GET /v1/agent/self"})
		if len(rs) != 1 || rs[0].Status != 200 {
			t.Fatalf("%s: agent self: %+v", n.Name, rs)
		}
		var self struct {
			DebugConfig struct {
				ACLsEnabled         bool
				AutoEncryptTLS      bool
				AutoEncryptAllowTLS bool
				ACLResolverSettings struct{ ACLDefaultPolicy string }
				TLS                 struct {
					InternalRPC struct{ VerifyIncoming, VerifyOutgoing, VerifyServerHostname bool }
				}
			}
			Stats struct {
				SerfLAN struct {
					Encrypted string `json:"encrypted"`
				} `json:"serf_lan"`
			}
		}
		if err := json.Unmarshal([]byte(rs[0].Body), &self); err != nil {
			t.Fatalf("%s: agent self: %v", n.Name, err)
		}
		c := self.DebugConfig
		if self.Stats.SerfLAN.Encrypted != "true" {
			t.Errorf("%s: gossip encrypted %q", n.Name, self.Stats.SerfLAN.Encrypted)
		}
		if !c.ACLsEnabled || c.ACLResolverSettings.ACLDefaultPolicy != "deny" {
			t.Errorf("%s: ACLs enabled %v, default policy %q", n.Name, c.ACLsEnabled, c.ACLResolverSettings.ACLDefaultPolicy)
		}
		rpc := c.TLS.InternalRPC
		if !rpc.VerifyOutgoing || !rpc.VerifyServerHostname {
			t.Errorf("%s: RPC TLS verify outgoing %v, server hostname %v", n.Name, rpc.VerifyOutgoing, rpc.VerifyServerHostname)
		}
		if n.Server && (!rpc.VerifyIncoming || !c.AutoEncryptAllowTLS) {
			t.Errorf("server %s: RPC TLS verify incoming %v, auto_encrypt allow_tls %v", n.Name, rpc.VerifyIncoming, c.AutoEncryptAllowTLS)
		}
		if !n.Server && !c.AutoEncryptTLS {
			t.Errorf("client %s: auto_encrypt tls off", n.Name)
		}
		if !n.Server {
			continue
		}
		// A plaintext RPC (first byte 0x01, Consul's msgpack RPC) is
		// closed at once by a server that verifies incoming TLS; without
		// TLS the server would wait for the request.
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(n.IP, "8300"), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: dial RPC: %v", n.Name, err)
		}
		_, _ = conn.Write([]byte{0x01})
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: a plaintext RPC connection stays open: the server takes RPC without TLS", n.Name)
		} else if err != nil && !errors.Is(err, io.EOF) {
			t.Logf("%s: plaintext RPC: %v", n.Name, err)
		}
	}
}
