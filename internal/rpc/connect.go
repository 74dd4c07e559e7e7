package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/internal/consul"
)

// ConnectSource is a [Source] backed by Consul's built-in CA through the
// local agent: the leaf certificate of the daemon's identity on this node,
// openssi-<daemon>.<Consul node name> (/v1/agent/connect/ca/leaf/<identity>,
// see [Identity]), and the CA roots
// (/v1/agent/connect/ca/roots). Two goroutines follow both with blocking
// queries, so a renewed leaf and a rotated root are used by the next
// handshake; a failed query is retried with backoff while the last good
// material stays in use.
type ConnectSource struct {
	client   *api.Client
	service  string
	identity Identity
	log      logrus.FieldLogger

	mu           sync.RWMutex
	cert         *tls.Certificate
	leafSerial   string
	roots        *x509.CertPool
	trustDomain  string
	activeRootID string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Refresh timing for the background watchers.
const (
	connectWaitTime   = 5 * time.Minute // blocking query wait
	connectMinBackoff = 250 * time.Millisecond
	connectMaxBackoff = 30 * time.Second
)

// NewConnectSource asks the agent behind client for its node name, then
// fetches the leaf certificate of service (which must start with
// "openssi-", see [ServiceName]) on that node, identity
// "<service>.<node name>" ([NodeIdentity]), and the CA roots, retrying
// until all are there or ctx ends, and then keeps the leaf and roots fresh
// in the background until Close. ctx bounds only the initial fetch.
//
// With Consul's ACLs on, the agent hands out the leaf only to a token
// allowed to write that service: the node's own.
func NewConnectSource(ctx context.Context, client *api.Client, service string, log logrus.FieldLogger) (*ConnectSource, error) {
	if !strings.HasPrefix(service, ServicePrefix) || len(service) == len(ServicePrefix) || strings.Contains(service, ".") {
		return nil, fmt.Errorf("rpc: connect source: service %q is not %s<daemon>", service, ServicePrefix)
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	s := &ConnectSource{
		client:  client,
		service: service,
		log:     log.WithFields(logrus.Fields{"component": "rpc-connect", "service": service}),
	}
	if err := retry(ctx, s.log, "agent node name", func() error {
		self, err := consul.Self(ctx, client)
		if err != nil {
			return err
		}
		if !validSegment(self.NodeName) {
			return fmt.Errorf("agent node name %q cannot be part of a SPIFFE ID (letters, digits, '.', '-', '_')", self.NodeName)
		}
		s.identity = Identity{Service: service, Node: self.NodeName}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("rpc: connect source %s: %w", service, err)
	}
	s.log = s.log.WithField("identity", s.identity.String())
	if err := retry(ctx, s.log, "CA roots", func() error { _, err := s.fetchRoots(ctx, 0); return err }); err != nil {
		return nil, fmt.Errorf("rpc: connect source %s: CA roots: %w", service, err)
	}
	if err := retry(ctx, s.log, "leaf certificate", func() error { _, err := s.fetchLeaf(ctx, 0); return err }); err != nil {
		return nil, fmt.Errorf("rpc: connect source %s: leaf certificate: %w", service, err)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go s.watch(bg, "CA roots", s.fetchRoots)
	go s.watch(bg, "leaf certificate", s.fetchLeaf)
	return s, nil
}

// Service returns the service name whose identity the source holds.
func (s *ConnectSource) Service() string { return s.service }

// Identity returns the identity the source's certificate carries: the
// service on this agent's node.
func (s *ConnectSource) Identity() Identity { return s.identity }

// ServerConfig implements [Source].
func (s *ConnectSource) ServerConfig() *tls.Config { return tlsConfigs(s.material).server() }

// ClientConfig implements [Source].
func (s *ConnectSource) ClientConfig(wantService string) *tls.Config {
	return tlsConfigs(s.material).client(wantService)
}

// Close stops the background watchers and waits for them.
func (s *ConnectSource) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return nil
}

func (s *ConnectSource) material() (material, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cert == nil {
		return material{}, ErrNoCertificate
	}
	return material{cert: s.cert, roots: s.roots, trustDomain: s.trustDomain}, nil
}

// fetchRoots reads the CA roots, as a blocking query on waitIndex, and
// returns the index to wait on next.
func (s *ConnectSource) fetchRoots(ctx context.Context, waitIndex uint64) (uint64, error) {
	list, index, err := consul.CARoots(ctx, s.client, consul.Wait{Index: waitIndex, Time: connectWaitTime})
	if err != nil {
		return waitIndex, err
	}
	if waitIndex != 0 && index == waitIndex {
		return index, nil // the wait timed out, nothing changed
	}
	pems := make([][]byte, 0, len(list.Roots))
	for _, r := range list.Roots {
		pems = append(pems, []byte(r.RootCertPEM))
	}
	pool, err := rootPool(pems...)
	if err != nil {
		return waitIndex, fmt.Errorf("agent returned %d roots: %w", len(list.Roots), err)
	}
	if list.TrustDomain == "" {
		return waitIndex, errors.New("agent returned no trust domain")
	}
	s.mu.Lock()
	changed := s.activeRootID != list.ActiveRootID
	s.roots = pool
	s.trustDomain = strings.ToLower(list.TrustDomain)
	s.activeRootID = list.ActiveRootID
	s.mu.Unlock()
	if changed {
		s.log.WithFields(logrus.Fields{"active_root": list.ActiveRootID, "roots": len(list.Roots), "trust_domain": list.TrustDomain}).Info("CA roots updated")
	}
	return index, nil
}

// fetchLeaf reads the leaf certificate, as a blocking query on waitIndex,
// and returns the index to wait on next.
func (s *ConnectSource) fetchLeaf(ctx context.Context, waitIndex uint64) (uint64, error) {
	leaf, index, err := consul.CALeaf(ctx, s.client, s.identity.String(), consul.Wait{Index: waitIndex, Time: connectWaitTime})
	if err != nil {
		return waitIndex, err
	}
	if waitIndex != 0 && index == waitIndex {
		return index, nil // the wait timed out, nothing changed
	}
	cert, err := keyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
	if err != nil {
		return waitIndex, fmt.Errorf("parse leaf certificate: %w", err)
	}
	s.mu.Lock()
	changed := s.leafSerial != leaf.SerialNumber
	s.cert, s.leafSerial = cert, leaf.SerialNumber
	s.mu.Unlock()
	if changed {
		s.log.WithFields(logrus.Fields{"serial": leaf.SerialNumber, "valid_before": leaf.ValidBefore}).Info("leaf certificate updated")
	}
	return index, nil
}

// watch follows fetch's blocking query until ctx ends, backing off after
// errors.
func (s *ConnectSource) watch(ctx context.Context, what string, fetch func(context.Context, uint64) (uint64, error)) {
	defer s.wg.Done()
	_ = consul.Watch(ctx, fetch, consul.WatchOptions{
		MinBackoff: connectMinBackoff,
		MaxBackoff: connectMaxBackoff,
		OnError: func(err error, retryIn time.Duration) {
			s.log.WithError(err).WithField("retry_in", retryIn).Warnf("refresh %s", what)
		},
	})
}

// retry calls f until it succeeds or ctx ends, backing off in between.
func retry(ctx context.Context, log logrus.FieldLogger, what string, f func() error) error {
	backoff := connectMinBackoff
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		log.WithError(err).WithField("retry_in", backoff).Warnf("fetch %s", what)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		backoff = min(2*backoff, connectMaxBackoff)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Leaf returns the certificate currently presented (nil before the first
// fetch).
func (s *ConnectSource) Leaf() *x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cert == nil {
		return nil
	}
	return s.cert.Leaf
}
