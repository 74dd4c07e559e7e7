package rpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/logging"
	"github.com/openssi/openssi/internal/rootkey"
)

// PinFetchTimeout bounds one read of a peer's pin during a handshake.
const PinFetchTimeout = 2 * time.Second

// PinnedSource is the [Source] of a daemon that runs as root (vprocd,
// initfailover): its peers are believed on a key pinned in Consul KV by
// the node's root, not on a Connect certificate, which the daemons' user
// openssi can fetch from the agent (see package internal/rootkey).
//
// It makes a P-256 key when it is created, kept in memory only, and
// presents a self-signed certificate of it carrying the daemon's SPIFFE
// ID. It accepts a peer only when the peer's certificate names one
// OpenSSI identity of the same trust domain (matching what a client
// wants, as for [Source]) and the key the peer proved it holds in the
// handshake is the one pinned for that identity's node and service
// ([rootkey.Key]). The chain does not matter: the pin is the trust. Pins
// are cached and kept current by a watch on openssi/rootkeys/ (when
// [PinnedConfig.List] is set), which also drops deleted pins; a key other
// than the cached pin makes the source read that pin again only as a
// fallback, one read at a time per key and within that key's budget
// ([rootkey.Cache]), so a flood naming one node delays no other node.
type PinnedSource struct {
	id       SPIFFEID
	identity Identity
	cert     *tls.Certificate
	pin      rootkey.Pin
	fetch    func(ctx context.Context, key string) (rootkey.Pin, bool, error)
	now      func() time.Time
	log      logrus.FieldLogger

	mu       sync.Mutex
	cache    rootkey.Cache
	flights  map[string]*pinFlight
	refusals logging.Once

	stop  context.CancelFunc
	watch sync.WaitGroup
}

// pinFlight is a fallback read of one pin in flight: done is closed when
// it ends, err is then its error.
type pinFlight struct {
	done chan struct{}
	err  error
}

// PinnedConfig configures [NewPinnedSource].
type PinnedConfig struct {
	// ID is the daemon's SPIFFE ID (its Connect leaf's): the trust domain
	// and the identity "<service>.<node>" its certificate carries.
	ID SPIFFEID
	// Fetch reads the pin at a key of [rootkey.Key]; found is false when
	// there is none.
	Fetch func(ctx context.Context, key string) (pin rootkey.Pin, found bool, err error)
	// List, when set, is a blocking query of every pin under
	// openssi/rootkeys/ (keys of [rootkey.Key]) waiting on waitIndex (0: at
	// once), returning Consul's index to wait on next. The source watches
	// it ([consul.Watch]) until Close, and its listings replace the cache.
	List func(ctx context.Context, waitIndex uint64) (pins map[string]rootkey.Pin, index uint64, err error)
	// Now is the clock of the fetch budget; nil is time.Now.
	Now func() time.Time
	// Log receives the refusals, each kind once at error level.
	Log logrus.FieldLogger
}

// NewPinnedSource makes the daemon's key and its certificate. The caller
// publishes [PinnedSource.Pin] at [PinnedSource.Key] with the node's root
// token before peers can believe it.
func NewPinnedSource(cfg PinnedConfig) (*PinnedSource, error) {
	ident, ok := cfg.ID.Identity()
	if !ok {
		return nil, fmt.Errorf("rpc: pinned source: %s names no %s<daemon>.<node> identity", cfg.ID, ServicePrefix)
	}
	if _, err := rootkey.Key(ident.Node, ident.Service); err != nil {
		return nil, fmt.Errorf("rpc: pinned source: %w", err)
	}
	if cfg.Fetch == nil {
		return nil, errors.New("rpc: pinned source: no way to read pins")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	cert, err := selfSigned(cfg.ID, cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("rpc: pinned source: %w", err)
	}
	s := &PinnedSource{
		id: cfg.ID, identity: ident, cert: cert, pin: rootkey.Of(cert.Leaf),
		fetch: cfg.Fetch, now: cfg.Now, flights: map[string]*pinFlight{},
		log: cfg.Log.WithFields(logrus.Fields{"component": "rpc-pinned", "identity": ident.String()}),
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if cfg.List != nil {
		s.watch.Add(1)
		go func() {
			defer s.watch.Done()
			s.watchPins(ctx, cfg.List)
		}()
	}
	return s, nil
}

// watchPins keeps the cache equal to what List reads, until ctx ends.
func (s *PinnedSource) watchPins(ctx context.Context, list func(context.Context, uint64) (map[string]rootkey.Pin, uint64, error)) {
	_ = consul.Watch(ctx, func(ctx context.Context, wait uint64) (uint64, error) {
		pins, index, err := list(ctx, wait)
		if err != nil {
			return 0, err
		}
		s.mu.Lock()
		s.cache.Replace(pins)
		s.mu.Unlock()
		return index, nil
	}, consul.WatchOptions{OnError: func(err error, retry time.Duration) {
		if ctx.Err() == nil {
			s.log.WithError(err).WithField("retry_in", retry).Warn("rpc: watching the pinned root keys")
		}
	}})
}

// selfSigned makes a P-256 key and a certificate of it for id, valid from
// an hour before now for ten years (the pin, not the dates, is what
// peers check; the key lives as long as the process).
func selfSigned(id SPIFFEID, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(id.String())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.Service},
		URIs:         []*url.URL{u},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Identity returns the identity the source's certificate carries.
func (s *PinnedSource) Identity() Identity { return s.identity }

// Pin returns the pin of the source's key, to publish at Key.
func (s *PinnedSource) Pin() rootkey.Pin { return s.pin }

// Key returns where the source's pin is published ([rootkey.Key], without
// the KV prefix "openssi/").
func (s *PinnedSource) Key() string {
	k, _ := rootkey.Key(s.identity.Node, s.identity.Service) // checked by NewPinnedSource
	return k
}

// Leaf returns the certificate the source presents.
func (s *PinnedSource) Leaf() *x509.Certificate { return s.cert.Leaf }

// ServerConfig implements [Source].
func (s *PinnedSource) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*s.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs.PeerCertificates, "")
			return err
		},
	}
}

// ClientConfig implements [Source].
func (s *PinnedSource) ClientConfig(wantService string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*s.cert},
		// Not skipping verification: Go's chain check is replaced by the
		// pin check in VerifyConnection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs.PeerCertificates, wantService)
			return err
		},
	}
}

// Close implements [Source]: it stops the watch of the pins and waits
// for its end.
func (s *PinnedSource) Close() error {
	s.stop()
	s.watch.Wait()
	return nil
}

// verify accepts a peer whose certificate passes pinnedPeer and whose key
// is the pinned one.
func (s *PinnedSource) verify(chain []*x509.Certificate, want string) (Identity, error) {
	id, key, presented, err := pinnedPeer(chain, s.id.TrustDomain, want)
	if err != nil {
		return Identity{}, err
	}
	s.mu.Lock()
	v := s.cache.Check(key, presented, s.now())
	f := s.flights[key]
	if v == rootkey.Fetch {
		f = &pinFlight{done: make(chan struct{})}
		s.flights[key] = f
	}
	s.mu.Unlock()
	switch v {
	case rootkey.Accept:
		return id, nil
	case rootkey.Fetch:
		ctx, cancel := context.WithTimeout(context.Background(), PinFetchTimeout)
		pin, found, ferr := s.fetch(ctx, key)
		cancel()
		s.mu.Lock()
		if ferr != nil {
			s.cache.Abort(key)
		} else {
			s.cache.Learn(key, pin, found)
		}
		f.err = ferr
		delete(s.flights, key)
		close(f.done)
		s.mu.Unlock()
	case rootkey.Join:
		<-f.done // within PinFetchTimeout
	}
	if v == rootkey.Fetch || v == rootkey.Join {
		if f.err != nil {
			return Identity{}, fmt.Errorf("rpc: %w: %s: reading its pinned key: %w", ErrPeerIdentity, id, f.err)
		}
		if p, ok := s.pinned(key); ok && p == presented {
			return id, nil
		}
	}
	pinned, ok := s.pinned(key)
	why, msg := "mismatch", fmt.Sprintf("peer %s presents key %s, not the key its node's root pinned at openssi/%s", id, presented, key)
	switch {
	case v == rootkey.Refuse:
		// Not read again: what is cached may be out of date, or absent.
		why, msg = "not-read", fmt.Sprintf("peer %s presents key %s, not the key cached for openssi/%s, which was not read again (too many reads of it lately)", id, presented, key)
	case !ok:
		why, msg = "unpinned", fmt.Sprintf("peer %s presents key %s, and no key is pinned at openssi/%s", id, presented, key)
	}
	s.refusals.Log(s.log, why+" "+key, logrus.Fields{"peer": id.String(), "presented": presented.String(), "pinned": pinned.String(), "fetch": v.String()}, "rpc: refused "+msg)
	return Identity{}, fmt.Errorf("rpc: %w: %s", ErrPeerIdentity, msg)
}

func (s *PinnedSource) pinned(key string) (rootkey.Pin, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache.Pinned(key)
}

// pinnedPeer checks what a pinned peer's certificate says, before its
// key: one OpenSSI identity of trustDomain ("" = any), matching want when
// want is not empty ([Identity.Matches]). It returns the identity, the key
// of its pin and the pin of the key presented.
func pinnedPeer(chain []*x509.Certificate, trustDomain, want string) (Identity, string, rootkey.Pin, error) {
	if len(chain) == 0 {
		return Identity{}, "", rootkey.Pin{}, fmt.Errorf("rpc: %w: no certificate presented", ErrPeerIdentity)
	}
	leaf := chain[0]
	ids := peerIdentities(leaf, trustDomain)
	if len(ids) != 1 {
		return Identity{}, "", rootkey.Pin{}, fmt.Errorf("rpc: %w: certificate (URIs %v) names %d %s<daemon>.<node> identities of trust domain %q, want one",
			ErrPeerIdentity, leaf.URIs, len(ids), ServicePrefix, trustDomain)
	}
	// Identities of another trust domain would be ignored by the check
	// above but still read by PeerIdentity: refuse them here.
	if other := peerIdentities(leaf, ""); len(other) != 1 || !strings.EqualFold(other[0].String(), ids[0].String()) {
		return Identity{}, "", rootkey.Pin{}, fmt.Errorf("rpc: %w: certificate (URIs %v) names more than one identity", ErrPeerIdentity, leaf.URIs)
	}
	id := ids[0]
	if want != "" && !id.Matches(want) {
		return Identity{}, "", rootkey.Pin{}, fmt.Errorf("rpc: %w: peer is %s, want %s", ErrPeerIdentity, id, want)
	}
	key, err := rootkey.Key(id.Node, id.Service)
	if err != nil {
		return Identity{}, "", rootkey.Pin{}, fmt.Errorf("rpc: %w: %w", ErrPeerIdentity, err)
	}
	return id, key, rootkey.Of(leaf), nil
}
