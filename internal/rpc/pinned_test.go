package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/openssi/openssi/internal/rootkey"
	"github.com/openssi/openssi/internal/rpc/rpctest"
)

// pins is an in-memory KV of pins with a count of reads.
type pins struct {
	mu    sync.Mutex
	m     map[string]rootkey.Pin
	reads int
	err   error
}

func (p *pins) fetch(_ context.Context, key string) (rootkey.Pin, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	if p.err != nil {
		return rootkey.Pin{}, false, p.err
	}
	pin, ok := p.m[key]
	return pin, ok, nil
}

func (p *pins) publish(s *PinnedSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]rootkey.Pin{}
	}
	p.m[s.Key()] = s.Pin()
}

func (p *pins) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

func spiffeOf(t *testing.T, identity string) SPIFFEID {
	t.Helper()
	id, err := ParseSPIFFEID(rpctest.SPIFFE(identity))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newPinned(t *testing.T, kv *pins, identity string) *PinnedSource {
	t.Helper()
	s, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, identity), Fetch: kv.fetch})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPinnedSource: root daemons believe each other on the keys their
// nodes' roots pinned, follow a restart's new key, and refuse a Connect
// certificate of the right identity (what user openssi can fetch), an
// unpinned key, and a server other than the one wanted.
func TestPinnedSource(t *testing.T) {
	kv := &pins{}
	a := newPinned(t, kv, "openssi-vprocd.node1")
	b := newPinned(t, kv, "openssi-vprocd.node2")
	kv.publish(a)
	kv.publish(b)
	if a.Key() != "rootkeys/node1/openssi-vprocd" || a.Identity() != (Identity{Service: "openssi-vprocd", Node: "node1"}) {
		t.Fatalf("key %q identity %v", a.Key(), a.Identity())
	}
	if rootkey.Of(a.Leaf()) != a.Pin() {
		t.Fatal("the pin is not the certificate's key's")
	}
	addr, calls := serve(t, b)
	got, err := check(a, addr, "openssi-vprocd.node2")
	if err != nil || got != "openssi-vprocd" {
		t.Fatalf("pinned peers: %q, %v", got, err)
	}
	if c := calls.last(); c.peerService != "openssi-vprocd" {
		t.Fatalf("server saw caller %q", c.peerService)
	}
	reads := kv.count()
	if _, err := check(a, addr, "openssi-vprocd.node2"); err != nil {
		t.Fatal(err)
	}
	if kv.count() != reads {
		t.Errorf("a known pin was read again (%d reads, then %d)", reads, kv.count())
	}

	// Node 1's vprocd restarts: a new key, published; node 2 reads the pin
	// again and believes it.
	a2 := newPinned(t, kv, "openssi-vprocd.node1")
	kv.publish(a2)
	if _, err := check(a2, addr, "openssi-vprocd.node2"); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	// The old key is no longer node 1's.
	if _, err := check(a, addr, "openssi-vprocd.node2"); !errors.Is(err, ErrRejectedByPeer) {
		t.Fatalf("the replaced key: %v, want rejected", err)
	}

	// A Connect leaf of node 1's vprocd, from Consul's CA: refused.
	ca := newTestCA(t, "connect")
	certPEM, keyPEM := ca.IssueNode(t, "node1", "openssi-vprocd")
	_ = refusedRaw(t, addr, &tls.Config{Certificates: []tls.Certificate{tlsCert(t, certPEM, keyPEM)}, MinVersion: tls.VersionTLS13})
	// A pinned source whose key nobody published: refused.
	c := newPinned(t, kv, "openssi-vprocd.node3")
	if _, err := check(c, addr, "openssi-vprocd.node2"); !errors.Is(err, ErrRejectedByPeer) {
		t.Fatalf("unpinned client: %v, want rejected", err)
	}
	// The client checks the server too: another node's, or an unpinned one.
	if _, err := check(a2, addr, "openssi-vprocd.node3"); !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("server of another node: %v, want ErrPeerIdentity", err)
	}
	addrC, _ := serve(t, c)
	if _, err := check(a2, addrC, "openssi-vprocd.node3"); !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("unpinned server: %v, want ErrPeerIdentity", err)
	}
	// A server holding node 2's Connect leaf (CA-issued): refused.
	c2, k2 := ca.IssueNode(t, "node2", "openssi-vprocd")
	fileSrc, err := NewFileSource(writeFiles(t, t.TempDir(), "n2", c2, k2, ca.PEM))
	if err != nil {
		t.Fatal(err)
	}
	addrF, _ := serve(t, fileSrc)
	if _, err := check(a2, addrF, "openssi-vprocd.node2"); !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("server with a Connect leaf: %v, want ErrPeerIdentity", err)
	}
	// Consul down: a key not cached cannot be checked, and is refused.
	d := newPinned(t, kv, "openssi-vprocd.node4")
	if _, err := d.verify([]*x509.Certificate{b.Leaf()}, ""); err != nil {
		t.Fatal(err) // d knows node 2's pin
	}
	kv.mu.Lock()
	kv.err = errors.New("no leader")
	kv.mu.Unlock()
	if _, err := check(d, addr, "openssi-vprocd.node2"); !errors.Is(err, ErrRejectedByPeer) {
		t.Fatalf("pin unreadable: %v, want rejected", err)
	}
}

func TestNewPinnedSourceRefuses(t *testing.T) {
	kv := &pins{}
	for _, id := range []string{"openssi-vprocd", "web.node1"} {
		if _, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, id), Fetch: kv.fetch}); err == nil {
			t.Errorf("identity %q: no error", id)
		}
	}
	if _, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, "openssi-vprocd.node1")}); err == nil {
		t.Error("no Fetch: no error")
	}
}

func TestPinnedPeer(t *testing.T) {
	cert := func(uris ...string) []*x509.Certificate {
		c := &x509.Certificate{RawSubjectPublicKeyInfo: []byte("spki")}
		for _, u := range uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, pu)
		}
		return []*x509.Certificate{c}
	}
	td := rpctest.TrustDomain
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  string
		ok    string // the pin's key when accepted
	}{
		{"one identity", cert(rpctest.SPIFFE("openssi-vprocd.node1")), "", "rootkeys/node1/openssi-vprocd"},
		{"wanted identity", cert(rpctest.SPIFFE("openssi-vprocd.Node1")), "openssi-vprocd.node1", "rootkeys/node1/openssi-vprocd"},
		{"wanted service", cert(rpctest.SPIFFE("openssi-initfailover.node1")), "openssi-initfailover", "rootkeys/node1/openssi-initfailover"},
		{"no certificate", nil, "", ""},
		{"no identity", cert(), "", ""},
		{"service only", cert(rpctest.SPIFFE("openssi-vprocd")), "", ""},
		{"not openssi", cert(rpctest.SPIFFE("web.node1")), "", ""},
		{"two identities", cert(rpctest.SPIFFE("openssi-vprocd.node1"), rpctest.SPIFFE("openssi-initfailover.node1")), "", ""},
		{"other trust domain", cert("spiffe://other.test/ns/default/dc/dc1/svc/openssi-vprocd.node1"), "", ""},
		{"other trust domain too", cert(rpctest.SPIFFE("openssi-vprocd.node1"), "spiffe://other.test/ns/default/dc/dc1/svc/openssi-vprocd.node2"), "", ""},
		{"not wanted node", cert(rpctest.SPIFFE("openssi-vprocd.node1")), "openssi-vprocd.node2", ""},
		{"not wanted service", cert(rpctest.SPIFFE("openssi-dlmd.node1")), "openssi-vprocd", ""},
	} {
		id, key, pin, err := pinnedPeer(tc.chain, td, tc.want)
		if tc.ok == "" {
			if !errors.Is(err, ErrPeerIdentity) {
				t.Errorf("%s: %v %q, %v; want ErrPeerIdentity", tc.name, id, key, err)
			}
			continue
		}
		if err != nil || key != tc.ok || pin != rootkey.Of(tc.chain[0]) {
			t.Errorf("%s: %v %q %v, %v; want key %q", tc.name, id, key, pin, err, tc.ok)
		}
	}
}

// TestPinnedFetchBudget: a storm of unknown keys naming one node reads at
// most that key's budget, and a pinned peer is still accepted meanwhile.
func TestPinnedFetchBudget(t *testing.T) {
	kv := &pins{}
	now := time.Unix(1000, 0)
	srv, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, "openssi-vprocd.node2"), Fetch: kv.fetch, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	good := newPinned(t, kv, "openssi-vprocd.node1")
	kv.publish(good)
	if _, err := srv.verify([]*x509.Certificate{good.Leaf()}, ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*rootkey.FetchBurst; i++ {
		bad := newPinned(t, kv, "openssi-vprocd.node1")
		if _, err := srv.verify([]*x509.Certificate{bad.Leaf()}, ""); !errors.Is(err, ErrPeerIdentity) {
			t.Fatalf("unpinned key %d: %v", i, err)
		}
	}
	if kv.count() != rootkey.FetchBurst {
		t.Fatalf("%d reads, want the budget %d", kv.count(), rootkey.FetchBurst)
	}
	if _, err := srv.verify([]*x509.Certificate{good.Leaf()}, ""); err != nil {
		t.Fatalf("pinned peer during the storm: %v", err)
	}
}

// TestPinnedFloodSparesOtherNodes: anyone reaching the port can present
// self-signed certificates naming a node with ever new keys; that must
// not keep a restarted peer of another node (a new key, not cached) out.
func TestPinnedFloodSparesOtherNodes(t *testing.T) {
	kv := &pins{}
	now := time.Unix(1000, 0)
	srv, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, "openssi-vprocd.node2"), Fetch: kv.fetch, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		bad := newPinned(t, kv, "openssi-vprocd.node9")
		if _, err := srv.verify([]*x509.Certificate{bad.Leaf()}, ""); !errors.Is(err, ErrPeerIdentity) {
			t.Fatalf("flood key %d: %v", i, err)
		}
	}
	good := newPinned(t, kv, "openssi-vprocd.node1")
	kv.publish(good)
	if _, err := srv.verify([]*x509.Certificate{good.Leaf()}, ""); err != nil {
		t.Fatalf("node 1's restarted vprocd during a flood naming node 9: %v", err)
	}
}

// TestPinnedRefusalSaysWhy: a refusal because the pin was not read again
// says so (not "no key is pinned", which may be false), and is logged at
// error level even when the same key was refused first for another reason.
func TestPinnedRefusalSaysWhy(t *testing.T) {
	kv := &pins{}
	now := time.Unix(1000, 0)
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	srv, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, "openssi-vprocd.node2"), Fetch: kv.fetch, Now: func() time.Time { return now }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for i := 0; i < 50; i++ {
		bad := newPinned(t, kv, "openssi-vprocd.node1")
		_, last = srv.verify([]*x509.Certificate{bad.Leaf()}, "")
	}
	if last == nil || strings.Contains(last.Error(), "no key is pinned") || !strings.Contains(last.Error(), "not read again") {
		t.Fatalf("refusal without a read: %v", last)
	}
	// By reason: the messages' first 60 characters, as this took them,
	// end in the key's hash, and two refusals of keys whose hashes begin
	// alike counted as one (a CI run failed so, 1 in 16).
	errs := map[string]bool{}
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.ErrorLevel {
			continue
		}
		switch {
		case strings.Contains(e.Message, "no key is pinned"):
			errs["unpinned"] = true
		case strings.Contains(e.Message, "not read again"):
			errs["not read again"] = true
		default:
			errs[e.Message] = true
		}
	}
	if len(errs) != 2 || !errs["unpinned"] || !errs["not read again"] {
		t.Fatalf("error-level refusals: %v, want the unpinned one and the not-read-again one", errs)
	}
}

// TestPinnedOneReadPerKey: handshakes presenting the same unknown key
// while its pin is read wait for that read instead of each reading.
func TestPinnedOneReadPerKey(t *testing.T) {
	const n = 5
	kv := &pins{}
	entered, release := make(chan struct{}), make(chan struct{})
	fetch := func(ctx context.Context, key string) (rootkey.Pin, bool, error) {
		entered <- struct{}{}
		<-release
		return kv.fetch(ctx, key)
	}
	// Each check reads the clock under the source's lock, just before
	// deciding: n+1 clock reads mean n+1 decisions taken.
	checked := make(chan struct{}, n+1)
	srv, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, "openssi-vprocd.node2"), Fetch: fetch,
		Now: func() time.Time { checked <- struct{}{}; return time.Unix(1000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	<-checked // NewPinnedSource's own
	peer := newPinned(t, kv, "openssi-vprocd.node1")
	kv.publish(peer)
	errs := make(chan error, n+1)
	for i := 0; i <= n; i++ {
		go func() {
			_, err := srv.verify([]*x509.Certificate{peer.Leaf()}, "")
			errs <- err
		}()
	}
	for i := 0; i <= n; i++ {
		<-checked
	}
	select {
	case <-entered:
	case err := <-errs:
		t.Fatalf("a check ended before the read: %v", err)
	}
	close(release)
	for i := 0; i <= n; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("check: %v", err)
			}
		case <-entered:
			t.Fatal("a second read of the same pin while one was in flight")
		}
	}
	if got := kv.count(); got != 1 {
		t.Fatalf("%d reads of one pin for %d concurrent handshakes, want 1", got, n+1)
	}
}
