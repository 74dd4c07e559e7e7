package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/internal/consulacl"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/nodetest"
	"github.com/openssi/openssi/internal/rootkey"
	"github.com/openssi/openssi/internal/rpc"
	initpeerv1 "github.com/openssi/openssi/proto/initfailoverpeer/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// TestRootDaemonsRefuseStolenLeaf is the attack of user openssi (clmsd's
// and dlmd's user) on the root daemons of the other nodes. That user can
// open the Consul agent's socket and holds the node's daemons' token, and
// the agent hands it any Connect leaf of the node, private key included:
// vprocd's and initfailover's too. Presenting node 1's vprocd or
// initfailover leaf to node 2's, and claiming to be node 1, must get
// nothing: the root daemons believe a peer only when its key is the one
// node 1's root published, which the daemons' token cannot write. The
// root daemons still reach each other (ssi exec, ssi service --all).
func TestRootDaemonsRefuseStolenLeaf(t *testing.T) {
	c := nodetest.Start(t, nodetest.Options{
		Consul:     consulagent.Options{Servers: 1, Clients: 1, ACL: true},
		NodeTokens: true,
		Clmsd:      clmsdBin,
		Binaries:   map[string]string{"vprocd": vprocdBin, "initfailover": initfailoverBin},
	})
	ctx := ctxFor(t, 60*time.Second)
	one, two := c.Nodes[0], c.Nodes[1]

	// What user openssi on node 1 reaches: the agent with the daemons'
	// token.
	attacker := consulAs(t, one.Agent, one.Token)
	for _, tc := range []struct {
		daemon string
		call   func(ctx context.Context, conn *grpc.ClientConn) error
	}{
		{"vprocd", func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := vprocpeerv1.NewProcTablePeerClient(conn).Snapshot(ctx, &vprocpeerv1.SnapshotRequest{Origin: 1})
			return err
		}},
		{"initfailover", func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := initpeerv1.NewInitfailoverPeerClient(conn).State(ctx, &initpeerv1.PeerState{Origin: 1})
			return err
		}},
	} {
		t.Run(tc.daemon, func(t *testing.T) {
			service := rpc.ServiceName(tc.daemon)
			leaf, _, err := attacker.Agent().ConnectCALeaf(consulacl.NodeService(service, one.Agent.Name), nil)
			if err != nil || leaf.PrivateKeyPEM == "" {
				t.Skipf("the agent did not hand out %s's leaf (%v): the attack's first step is closed", service, err)
			}
			cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
			if err != nil {
				t.Fatal(err)
			}
			addr, err := rpc.LookupRegisteredOn(ctx, attacker, tc.daemon, 2, two.Agent.Name)
			if err != nil {
				t.Fatal(err)
			}
			// The attacker does not care who answers: it skips checking
			// the server, and presents the stolen leaf.
			creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			callErr := tc.call(callCtx, conn)
			if callErr == nil {
				t.Fatalf("node 2's %s answered a peer presenting node 1's %s leaf fetched with the daemons' token: user openssi acts as root on every node", tc.daemon, tc.daemon)
			}
			// Refused for the right reason: in the TLS handshake (the
			// call never reached the server: Unavailable; the client sees
			// the alert or a broken pipe, whichever comes first), by the
			// pin check, which logs the key it refused.
			if status.Code(callErr) != codes.Unavailable {
				t.Fatalf("call with the stolen leaf: %v; want Unavailable, the TLS handshake's refusal", callErr)
			}
			stolen, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			want := "rpc: refused peer " + service + "." + one.Agent.Name + " presents key " + rootkey.Of(stolen).String()
			deadline := time.Now().Add(10 * time.Second)
			for log := ""; !strings.Contains(log, want); {
				b, _ := os.ReadFile(filepath.Join(two.Dir, tc.daemon+".log"))
				log = string(b)
				if time.Now().After(deadline) {
					t.Fatalf("node 2's %s log has no %q: the call failed for another reason (%v)", tc.daemon, want, callErr)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("refused as it should be: %v", callErr)
		})
	}

	// The daemons' token cannot publish a root key.
	if _, err := attacker.KV().Put(&api.KVPair{Key: "openssi/rootkeys/" + one.Agent.Name + "/openssi-vprocd", Value: []byte(`{}`)}, nil); !denied(err) {
		t.Errorf("the daemons' token writes a root key: %v, want permission denied", err)
	}

	// The root daemons still believe each other.
	var out bytes.Buffer
	p, err := vproc.Exec(ctx, 2, vproc.Cmd{Args: []string{"echo", "hi"}, Stdout: &out}, vproc.WithSocket(one.DaemonSocket("vprocd")))
	if err != nil {
		t.Fatalf("exec on node 2 from node 1: %v", err)
	}
	if st, err := p.Wait(); err != nil || st.Code != 0 || out.String() != "hi\n" {
		t.Fatalf("exec on node 2: %+v %v %q", st, err, out.String())
	}
	var sout strings.Builder
	if code := cli.Main([]string{"--run-dir", one.RunDir, "service", "status", "x.service", "--all"}, &sout, &sout); code != 1 || strings.Count(sout.String(), "no systemd on this node") != 2 {
		t.Fatalf("ssi service status --all: exit %d: %s", code, sout.String())
	}
}
