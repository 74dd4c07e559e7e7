package rpc

import (
	"crypto/tls"
	"errors"
	"os"
	"testing"
	"time"
)

const fileTD = "openssi.test"

func TestFileSourceMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "cluster ca")
	sCert, sKey := ca.Issue(t, svcID(fileTD, "openssi-clmsd.node1"))
	cCert, cKey := ca.Issue(t, svcID(fileTD, "openssi-dlmd.node2"))
	scfg := writeFiles(t, dir, "server", sCert, sKey, ca.PEM)
	scfg.TrustDomain = fileTD
	ccfg := writeFiles(t, dir, "client", cCert, cKey, ca.PEM)
	ccfg.TrustDomain = fileTD
	server, err := NewFileSource(scfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewFileSource(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, log := serve(t, server)

	got, err := check(client, addr, "openssi-clmsd")
	if err != nil {
		t.Fatalf("call over mTLS: %v", err)
	}
	if got != "openssi-clmsd" {
		t.Errorf("client saw server %q, want openssi-clmsd", got)
	}
	if got := log.last().peerService; got != "openssi-dlmd" {
		t.Errorf("server saw caller %q, want openssi-dlmd", got)
	}

	// The client refuses a server that is not the service it wants.
	if _, err := check(client, addr, "openssi-vprocd"); !errors.Is(err, ErrPeerIdentity) {
		t.Errorf("client wanting openssi-vprocd from openssi-clmsd: %v, want ErrPeerIdentity", err)
	}

	// A client the server rejects learns it from Dial.
	tdCert0, tdKey0 := ca.Issue(t, svcID("other.test", "openssi-dlmd.node2"))
	outsider, err := NewFileSource(writeFiles(t, dir, "outsider", tdCert0, tdKey0, ca.PEM))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := check(outsider, addr, "openssi-clmsd"); !errors.Is(err, ErrRejectedByPeer) {
		t.Errorf("client of another trust domain: %v, want ErrRejectedByPeer", err)
	}

	// The server refuses clients that are not cluster members.
	other := newTestCA(t, "other ca")
	oCert, oKey := other.Issue(t, svcID(fileTD, "openssi-dlmd.node2"))
	webCert, webKey := ca.Issue(t, svcID(fileTD, "web"))
	tdCert, tdKey := ca.Issue(t, svcID("other.test", "openssi-dlmd.node2"))
	refusals := []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"certificate from another CA", []tls.Certificate{tlsCert(t, oCert, oKey)}},
		{"certificate of a non-openssi service", []tls.Certificate{tlsCert(t, webCert, webKey)}},
		{"certificate of another trust domain", []tls.Certificate{tlsCert(t, tdCert, tdKey)}},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			err := refusedRaw(t, addr, &tls.Config{Certificates: r.certs})
			t.Logf("refused: %v", err)
		})
	}
}

func TestFileSourceReload(t *testing.T) {
	dir := t.TempDir()
	ca1 := newTestCA(t, "ca1")
	ca2 := newTestCA(t, "ca2")

	sCert, sKey := ca1.Issue(t, svcID(fileTD, "openssi-clmsd.node1"))
	cCert, cKey := ca1.Issue(t, svcID(fileTD, "openssi-dlmd.node2"))
	scfg := writeFiles(t, dir, "server", sCert, sKey, ca1.PEM)
	scfg.CheckInterval = -1 // check the files at every handshake
	ccfg := writeFiles(t, dir, "client", cCert, cKey, ca1.PEM)
	server, err := NewFileSource(scfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewFileSource(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, server)
	if _, err := check(client, addr, "openssi-clmsd"); err != nil {
		t.Fatalf("before reload: %v", err)
	}

	// The cluster moves to ca2. The server picks the new files up by
	// itself; the client still has ca1 material and is now refused.
	sCert2, sKey2 := ca2.Issue(t, svcID(fileTD, "openssi-clmsd.node1"))
	writeFiles(t, dir, "server", sCert2, sKey2, ca2.PEM)
	future := time.Now().Add(time.Minute) // a sure mtime change
	for _, f := range []string{scfg.CertFile, scfg.KeyFile, scfg.CAFile} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := check(client, addr, "openssi-clmsd"); err == nil {
		t.Fatal("client with ca1 material accepted after the server moved to ca2")
	}
	if server.Leaf().Issuer.CommonName != "ca2" {
		t.Fatalf("server did not reload: issuer %q", server.Leaf().Issuer.CommonName)
	}

	// A half-written update fails to load and keeps the old material.
	if err := os.WriteFile(ccfg.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := client.Reload(); err == nil {
		t.Fatal("Reload accepted a garbage key")
	}
	if client.Leaf().Issuer.CommonName != "ca1" {
		t.Fatal("failed reload replaced the certificate")
	}

	// The explicit Reload of the client brings it to ca2 as well.
	cCert2, cKey2 := ca2.Issue(t, svcID(fileTD, "openssi-dlmd.node2"))
	writeFiles(t, dir, "client", cCert2, cKey2, ca2.PEM)
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := check(client, addr, "openssi-clmsd"); err != nil {
		t.Fatalf("after both reloaded: %v", err)
	}
}

func TestNewFileSourceErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	good, goodKey := ca.Issue(t, svcID(fileTD, "openssi-clmsd.node1"))
	web, webKey := ca.Issue(t, svcID(fileTD, "web"))
	bare, bareKey := ca.Issue(t, svcID(fileTD, "openssi-clmsd"))
	_, otherKey := ca.Issue(t, svcID(fileTD, "openssi-clmsd.node1"))
	tests := []struct {
		name string
		cfg  func() FileConfig
	}{
		{"missing names", func() FileConfig { return FileConfig{CertFile: "x"} }},
		{"missing files", func() FileConfig {
			return FileConfig{CertFile: dir + "/none.crt", KeyFile: dir + "/none.key", CAFile: dir + "/none-ca.crt"}
		}},
		{"key does not match", func() FileConfig { return writeFiles(t, dir, "mismatch", good, otherKey, ca.PEM) }},
		{"no CA in ca_file", func() FileConfig { return writeFiles(t, dir, "noca", good, goodKey, []byte("nothing")) }},
		{"certificate names no openssi service", func() FileConfig { return writeFiles(t, dir, "web", web, webKey, ca.PEM) }},
		{"certificate names the service but no node", func() FileConfig { return writeFiles(t, dir, "bare", bare, bareKey, ca.PEM) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewFileSource(tt.cfg()); err == nil {
				t.Fatal("NewFileSource succeeded")
			}
		})
	}
}

func TestNoCertificateYet(t *testing.T) {
	s := &ConnectSource{}
	if _, err := s.material(); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("material() = %v, want ErrNoCertificate", err)
	}
}
