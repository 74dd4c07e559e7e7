package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Source supplies the certificates and trust roots of one daemon for
// mutual TLS, and checks peers against them.
//
// The configs it returns read the current certificate and roots at every
// handshake, so a Source that renews or reloads (both implementations do)
// changes what new connections use without rebuilding servers or clients.
// Methods are safe for concurrent use.
type Source interface {
	// ServerConfig returns the TLS config for a gRPC server: it presents
	// the daemon's certificate, requires a client certificate, and accepts
	// only clients that pass the identity check of the package doc.
	ServerConfig() *tls.Config
	// ClientConfig returns the TLS config for dialing a peer: it presents
	// the daemon's certificate and accepts only servers that pass the
	// identity check; when wantService is not empty the server must hold
	// it: a service ("openssi-clmsd", on any node) or a per-node identity
	// ("openssi-clmsd.node3", see [Identity.Matches]).
	ClientConfig(wantService string) *tls.Config
	// Close stops background refreshing. Configs already handed out keep
	// working with the last certificate and roots.
	Close() error
}

// ErrNoCertificate is returned during a handshake when the source has no
// certificate yet.
var ErrNoCertificate = errors.New("rpc: no certificate loaded")

// material is what a source holds at one moment.
type material struct {
	cert        *tls.Certificate
	roots       *x509.CertPool
	trustDomain string // "" = accept any trust domain
}

// tlsConfigs builds server and client configs around a function returning
// the current material.
type tlsConfigs func() (material, error)

func (cur tlsConfigs) server() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			m, err := cur()
			if err != nil {
				return nil, err
			}
			return m.cert, nil
		},
		// The chain is verified in VerifyConnection against the roots of
		// the moment, which a static ClientCAs pool could not follow.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			m, err := cur()
			if err != nil {
				return err
			}
			_, err = verifyPeer(cs.PeerCertificates, m.roots, m.trustDomain, x509.ExtKeyUsageClientAuth, "")
			return err
		},
	}
}

func (cur tlsConfigs) client(want string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m, err := cur()
			if err != nil {
				return nil, err
			}
			return m.cert, nil
		},
		// Not skipping verification: Go's built-in check (static roots,
		// DNS host name) is replaced by VerifyConnection, which verifies
		// the chain against the current roots and the peer's SPIFFE ID.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			m, err := cur()
			if err != nil {
				return err
			}
			_, err = verifyPeer(cs.PeerCertificates, m.roots, m.trustDomain, x509.ExtKeyUsageServerAuth, want)
			return err
		},
	}
}

// keyPair parses a PEM certificate chain and key into a tls.Certificate
// with its Leaf set.
func keyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// rootPool parses PEM CA certificates into a pool; it fails when none is
// found.
func rootPool(pems ...[]byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for _, p := range pems {
		if pool.AppendCertsFromPEM(p) {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no CA certificate found")
	}
	return pool, nil
}
