// Package rpctest makes certificate authorities and leaf certificates for
// tests of the inter-node RPC (package rpc) and of the daemons that use it.
package rpctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority made for a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is Cert in PEM, as a CA file holds it.
	PEM []byte
}

var serial atomic.Int64

// NewKey returns a new P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewCA returns a self-signed CA valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// TrustDomain is the SPIFFE trust domain of the IDs SPIFFE makes.
const TrustDomain = "openssi.test"

// SPIFFE returns the SPIFFE ID of identity (a per-node identity such as
// "openssi-dlmd.node3", or anything a test wants refused) in TrustDomain,
// in the shape Consul Connect gives it.
func SPIFFE(identity string) string {
	return "spiffe://" + TrustDomain + "/ns/default/dc/dc1/svc/" + identity
}

// NodeName is the Consul node name tests give node number n: "node<n>".
func NodeName(n uint32) string { return "node" + strconv.FormatUint(uint64(n), 10) }

// IssueNode makes the leaf of the daemons of node (a Consul node name)
// for the given services: one per-node SPIFFE ID
// "<service>.<node>" each, in TrustDomain, as Consul Connect would issue
// it to that node's daemons.
func (ca *CA) IssueNode(t testing.TB, node string, services ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	uris := make([]string, 0, len(services))
	for _, s := range services {
		uris = append(uris, SPIFFE(s+"."+node))
	}
	return ca.Issue(t, uris...)
}

// Issue makes a leaf for client and server authentication with the given
// URI SANs (SPIFFE IDs), in PEM.
func (ca *CA) Issue(t testing.TB, uris ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
