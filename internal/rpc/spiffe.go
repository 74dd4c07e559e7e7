package rpc

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// ServicePrefix starts the Consul service name, and so the certificate
// identity, of every OpenSSI daemon.
const ServicePrefix = "openssi-"

// ServiceName returns the Consul service name of a daemon: "clmsd" ->
// "openssi-clmsd".
func ServiceName(daemon string) string { return ServicePrefix + daemon }

// ErrBadSPIFFEID is wrapped by [ParseSPIFFEID] errors.
var ErrBadSPIFFEID = errors.New("invalid SPIFFE ID")

// SPIFFEID is a Consul Connect service identity:
// spiffe://<TrustDomain>[/ap/<Partition>]/ns/<Namespace>/dc/<Datacenter>/svc/<Service>.
type SPIFFEID struct {
	TrustDomain string // e.g. "7f3c...-....consul", lower case
	Partition   string // admin partition, "" when absent (Consul CE)
	Namespace   string // e.g. "default"
	Datacenter  string // e.g. "dc1"
	Service     string // e.g. "openssi-clmsd.node3" (see [Identity])
}

// String formats the ID as a URI.
func (id SPIFFEID) String() string {
	var b strings.Builder
	b.WriteString("spiffe://")
	b.WriteString(id.TrustDomain)
	if id.Partition != "" {
		b.WriteString("/ap/")
		b.WriteString(id.Partition)
	}
	fmt.Fprintf(&b, "/ns/%s/dc/%s/svc/%s", id.Namespace, id.Datacenter, id.Service)
	return b.String()
}

// IsOpenSSI reports whether the ID names an OpenSSI daemon on a node
// ("openssi-<daemon>.<node>", see [Identity]). A bare service name
// ("openssi-dlmd") names no node and is not one.
func (id SPIFFEID) IsOpenSSI() bool {
	_, ok := id.Identity()
	return ok
}

// Identity returns the daemon identity the ID's service names, when it
// names one.
func (id SPIFFEID) Identity() (Identity, bool) {
	i, err := ParseIdentity(id.Service)
	return i, err == nil
}

// maxSPIFFEIDLen bounds what the parser accepts (the SPIFFE spec's limit).
const maxSPIFFEIDLen = 2048

// ParseSPIFFEID parses a Consul service SPIFFE ID. It is strict: lower
// case scheme and trust domain, no user info, port, query, fragment or
// percent-encoding, and exactly the Consul service path shape. Errors wrap
// [ErrBadSPIFFEID].
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	bad := func(why string) (SPIFFEID, error) {
		return SPIFFEID{}, fmt.Errorf("rpc: %w %.100q: %s", ErrBadSPIFFEID, s, why)
	}
	if len(s) > maxSPIFFEIDLen {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return bad("scheme is not spiffe://")
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no path")
	}
	if !validTrustDomain(td) {
		return bad("invalid trust domain")
	}
	segs := strings.Split(path, "/")
	var id SPIFFEID
	id.TrustDomain = td
	if len(segs) == 8 && segs[0] == "ap" {
		id.Partition = segs[1]
		if !validSegment(id.Partition) {
			return bad("invalid partition")
		}
		segs = segs[2:]
	}
	if len(segs) != 6 || segs[0] != "ns" || segs[2] != "dc" || segs[4] != "svc" {
		return bad("path is not [/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<service>")
	}
	id.Namespace, id.Datacenter, id.Service = segs[1], segs[3], segs[5]
	for _, v := range []string{id.Namespace, id.Datacenter, id.Service} {
		if !validSegment(v) {
			return bad("invalid path segment")
		}
	}
	return id, nil
}

// validTrustDomain allows what the SPIFFE spec allows in a trust domain:
// lower case letters, digits, '.', '-' and '_'.
func validTrustDomain(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validSegment allows the SPIFFE path characters (letters, digits, '.',
// '-', '_'), excluding the relative segments "." and "..".
func validSegment(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ErrPeerIdentity is wrapped by handshake errors about the peer's
// certificate: bad chain, wrong trust domain, not an OpenSSI service, not
// the wanted service.
var ErrPeerIdentity = errors.New("peer identity rejected")

// peerIdentities returns the OpenSSI daemon identities in a certificate's
// URI SANs, restricted to trustDomain when it is not empty. Unparsable
// URIs and IDs that name no node are ignored (they grant nothing).
func peerIdentities(leaf *x509.Certificate, trustDomain string) []Identity {
	var out []Identity
	for _, u := range leaf.URIs {
		id, err := ParseSPIFFEID(u.String())
		if err != nil {
			continue
		}
		if trustDomain != "" && !strings.EqualFold(id.TrustDomain, trustDomain) {
			continue
		}
		if ident, ok := id.Identity(); ok {
			out = append(out, ident)
		}
	}
	return out
}

// verifyPeer checks a peer's certificate chain against roots (the chain's
// extra certificates serve as intermediates) for the given key usage, then
// its identity: it must name an OpenSSI daemon on a node, in trustDomain
// ("" = any), all its identities the same node, and match want when want
// is not empty (see [Identity.Matches]). It returns the identity accepted.
func verifyPeer(chain []*x509.Certificate, roots *x509.CertPool, trustDomain string, usage x509.ExtKeyUsage, want string) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, fmt.Errorf("rpc: %w: no certificate presented", ErrPeerIdentity)
	}
	if roots == nil {
		return Identity{}, fmt.Errorf("rpc: %w: no trust roots loaded", ErrPeerIdentity)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return Identity{}, fmt.Errorf("rpc: %w: %w", ErrPeerIdentity, err)
	}
	ids := peerIdentities(leaf, trustDomain)
	if len(ids) == 0 {
		return Identity{}, fmt.Errorf("rpc: %w: certificate (URIs %v) names no %s<daemon>.<node> identity of trust domain %q (a certificate naming only the service names no node and is refused)",
			ErrPeerIdentity, leaf.URIs, ServicePrefix, trustDomain)
	}
	for _, id := range ids[1:] {
		if !SameNode(id.Node, ids[0].Node) {
			return Identity{}, fmt.Errorf("rpc: %w: certificate names two nodes (%s and %s)", ErrPeerIdentity, ids[0], id)
		}
	}
	if want == "" {
		return ids[0], nil
	}
	for _, id := range ids {
		if id.Matches(want) {
			return id, nil
		}
	}
	return Identity{}, fmt.Errorf("rpc: %w: peer is %s, want %s", ErrPeerIdentity, ids[0], want)
}
