package rpc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"
)

func newConnect(t *testing.T, client *api.Client, service string) *ConnectSource {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := NewConnectSource(ctx, client, service, logrus.StandardLogger())
	if err != nil {
		t.Fatalf("NewConnectSource(%s): %v", service, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConnectSourceMutualTLS(t *testing.T) {
	client := startConsul(t)
	clmsd := newConnect(t, client, "openssi-clmsd")
	dlmd := newConnect(t, client, "openssi-dlmd")
	addr, log := serve(t, clmsd)

	got, err := check(dlmd, addr, "openssi-clmsd")
	if err != nil {
		t.Fatalf("dlmd -> clmsd over Connect mTLS: %v", err)
	}
	if got != "openssi-clmsd" {
		t.Errorf("client saw server %q, want openssi-clmsd", got)
	}
	if got := log.last().peerService; got != "openssi-dlmd" {
		t.Errorf("server saw caller %q, want openssi-dlmd", got)
	}
	if _, err := check(dlmd, addr, "openssi-vprocd"); !errors.Is(err, ErrPeerIdentity) {
		t.Errorf("wanting openssi-vprocd, reached openssi-clmsd: %v, want ErrPeerIdentity", err)
	}

	// The leaves name this agent's node: "<service>.<node name>".
	self, err := client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	node, _ := self["Config"]["NodeName"].(string)
	if want := (Identity{Service: "openssi-dlmd", Node: node}); dlmd.Identity() != want {
		t.Errorf("identity %+v, want %+v", dlmd.Identity(), want)
	}
	if uris := dlmd.Leaf().URIs; len(uris) != 1 || !strings.HasSuffix(uris[0].String(), "/svc/openssi-dlmd."+node) {
		t.Errorf("leaf URIs %v, want one ending in /svc/openssi-dlmd.%s", uris, node)
	}
	if _, err := check(dlmd, addr, NodeIdentity("openssi-clmsd", strings.ToUpper(node))); err != nil {
		t.Errorf("wanting clmsd on node %s: %v", node, err)
	}
	if _, err := check(dlmd, addr, NodeIdentity("openssi-clmsd", "other-node")); !errors.Is(err, ErrPeerIdentity) {
		t.Errorf("wanting clmsd on other-node, reached it on %s: %v, want ErrPeerIdentity", node, err)
	}

	// Outsiders: a Connect leaf of a non-openssi service of the same CA,
	// the Connect leaf of the bare service openssi-dlmd (what anyone who
	// may ask the agent for it gets; it names no node), a certificate of
	// another CA naming an openssi service of this trust domain, and no
	// certificate at all.
	web, _, err := client.Agent().ConnectCALeaf("web", nil)
	if err != nil {
		t.Fatal(err)
	}
	bare, _, err := client.Agent().ConnectCALeaf("openssi-dlmd", nil)
	if err != nil {
		t.Fatal(err)
	}
	roots, _, err := client.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign := newTestCA(t, "foreign")
	fCert, fKey := foreign.Issue(t, svcID(roots.TrustDomain, "openssi-dlmd.node2"))
	tests := []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"connect leaf of service web", []tls.Certificate{tlsCert(t, []byte(web.CertPEM), []byte(web.PrivateKeyPEM))}},
		{"connect leaf of the bare service openssi-dlmd", []tls.Certificate{tlsCert(t, []byte(bare.CertPEM), []byte(bare.PrivateKeyPEM))}},
		{"openssi identity from another CA", []tls.Certificate{tlsCert(t, fCert, fKey)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Logf("refused: %v", refusedRaw(t, addr, &tls.Config{Certificates: tt.certs}))
		})
	}

	// A server holding a leaf for web, or for the bare service, is
	// refused by an openssi client.
	t.Run("server of service web", func(t *testing.T) {
		webSrc := &staticSource{cert: tlsCert(t, []byte(web.CertPEM), []byte(web.PrivateKeyPEM))}
		webAddr, _ := serve(t, webSrc)
		if _, err := check(dlmd, webAddr, ""); !errors.Is(err, ErrPeerIdentity) {
			t.Fatalf("dialing a web server: %v, want ErrPeerIdentity", err)
		}
	})
	t.Run("server of the bare service openssi-dlmd", func(t *testing.T) {
		bareSrc := &staticSource{cert: tlsCert(t, []byte(bare.CertPEM), []byte(bare.PrivateKeyPEM))}
		bareAddr, _ := serve(t, bareSrc)
		if _, err := check(clmsd, bareAddr, "openssi-dlmd"); !errors.Is(err, ErrPeerIdentity) {
			t.Fatalf("dialing a bare openssi-dlmd server: %v, want ErrPeerIdentity", err)
		}
	})
}

// staticSource presents a fixed certificate and checks nothing: a server
// that is not an OpenSSI daemon.
type staticSource struct{ cert tls.Certificate }

func (s *staticSource) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.cert}, ClientAuth: tls.RequestClientCert}
}
func (s *staticSource) ClientConfig(string) *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
func (s *staticSource) Close() error                    { return nil }

func TestConnectRootRotation(t *testing.T) {
	client := startConsul(t)
	clmsd := newConnect(t, client, "openssi-clmsd")
	dlmd := newConnect(t, client, "openssi-dlmd")
	addr, _ := serve(t, clmsd)
	if _, err := check(dlmd, addr, "openssi-clmsd"); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	before, _, err := client.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}

	// Rotate: same provider, a fresh private key -> a new root,
	// cross-signed by the old one.
	conf, _, err := client.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	newConf := &api.CAConfig{Provider: "consul", Config: maps.Clone(conf.Config)}
	newConf.Config["PrivateKey"] = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if _, err := client.Connect().CASetConfig(newConf, nil); err != nil {
		t.Fatalf("rotate CA: %v", err)
	}
	var newRoot *x509.Certificate
	waitFor(t, 30*time.Second, "a new active root", func() bool {
		after, _, err := client.Connect().CARoots(nil)
		if err != nil || after.ActiveRootID == before.ActiveRootID {
			return false
		}
		for _, r := range after.Roots {
			if r.Active {
				b, _ := pem.Decode([]byte(r.RootCertPEM))
				newRoot, err = x509.ParseCertificate(b.Bytes)
				return err == nil
			}
		}
		return false
	})

	// Both sources pick up the new roots and a leaf signed under the new
	// root without a restart (the agent spreads leaf renewal over up to
	// 30s after a rotation).
	for _, s := range []*ConnectSource{clmsd, dlmd} {
		waitFor(t, 90*time.Second, s.Service()+" leaf under the new root", func() bool {
			leaf := s.Leaf()
			return leaf != nil && bytes.Equal(leaf.AuthorityKeyId, newRoot.SubjectKeyId)
		})
	}
	if _, err := check(dlmd, addr, "openssi-clmsd"); err != nil {
		t.Fatalf("after rotation: %v", err)
	}

	// A daemon started after the rotation talks to one that was running
	// before it.
	vprocd := newConnect(t, client, "openssi-vprocd")
	if _, err := check(vprocd, addr, "openssi-clmsd"); err != nil {
		t.Fatalf("new daemon after rotation: %v", err)
	}
}

func TestNewConnectSourceErrors(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.Address = "127.0.0.1:" + itoa(freePorts(t, 1)[0]) // no agent
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	quiet := logrus.New()
	quiet.SetLevel(logrus.ErrorLevel)
	if _, err := NewConnectSource(context.Background(), client, "web", quiet); err == nil {
		t.Error("accepted a service outside openssi-")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := NewConnectSource(ctx, client, "openssi-clmsd", quiet); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no agent: %v, want deadline exceeded", err)
	}
}
