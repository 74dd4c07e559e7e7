package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
)

// fileSource writes the clmsd leaf of Consul node name (from ca) and
// returns a FileSource over it.
func fileSource(t *testing.T, ca *rpctest.CA, name string) rpc.Source {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := ca.IssueNode(t, name, rpc.ServiceName("clmsd"))
	cfg := rpc.FileConfig{CertFile: filepath.Join(dir, "c.crt"), KeyFile: filepath.Join(dir, "c.key"), CAFile: filepath.Join(dir, "ca.crt")}
	for f, b := range map[string][]byte{cfg.CertFile: certPEM, cfg.KeyFile: keyPEM, cfg.CAFile: ca.PEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, err := rpc.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestSkewProbeWantsTheHolder: the clock of node 2 is measured only on the
// clmsd whose certificate names node 2's claim holder ("b"): a clmsd
// holding node "c"'s certificate and answering as node 2 is not believed.
func TestSkewProbeWantsTheHolder(t *testing.T) {
	ca := rpctest.NewCA(t, "clmsd test CA")
	for _, tt := range []struct {
		server string // the Consul node whose certificate node 2's address presents
		probed bool
	}{
		{"c", false},
		{"B", true}, // node names compare case-insensitively
	} {
		t.Run(tt.server, func(t *testing.T) {
			s := testServer(t) // node 2 is held by "b"
			answering := testServer(t)
			answering.number = 2 // it says it is node 2
			g := rpc.NewServer(fileSource(t, ca, tt.server))
			NewPeer(answering).Register(g)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = g.Serve(ln) }()
			defer g.Stop()

			p := NewSkewProber(s, fileSource(t, ca, "a"), time.Second)
			defer p.closeAll()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p.probe(ctx, 2, ln.Addr().String())
			if _, got := s.skew.Get(2); got != tt.probed {
				t.Fatalf("node 2's clock measured on %q's clmsd: %v, want %v", tt.server, got, tt.probed)
			}
		})
	}
}
