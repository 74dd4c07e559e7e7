// Package rootkey pins the peer keys of the OpenSSI daemons that run as
// root (vprocd, initfailover), so that their identity rests on something
// the daemons' user openssi cannot obtain.
//
// The Consul agent hands a cached Connect leaf certificate, private key
// included, to any caller of its API, and its socket is open to user
// openssi (clmsd and dlmd run as it): a Connect leaf is a credential of
// that user, not of root. So each root daemon makes its own key pair when
// it starts, keeps it in memory, and publishes the key's fingerprint (a
// [Pin]) in Consul KV at openssi/rootkeys/<node>/<service> ([Key]) with the
// node's root token (/etc/openssi/consul-root.token, root 0600; its
// policy, internal/consulacl.RootRules, may write only that node's keys,
// and the daemons' token none). A peer is believed to be that daemon on
// that node only when the key it proves it holds in the TLS handshake is
// the one pinned there.
//
// A restart makes a new key and publishes it: peers that cached the old
// one fetch the pin again when a handshake presents another key. [Cache]
// decides when, without a clock or Consul of its own; what it may fetch
// is bounded, since any client can present any key.
package rootkey

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Prefix is where the pins live, under OpenSSI's KV prefix "openssi/"
// (internal/consul.Prefix): openssi/rootkeys/<node>/<service>.
const Prefix = "rootkeys/"

// Pin is the SHA-256 of a public key's DER SubjectPublicKeyInfo.
type Pin [sha256.Size]byte

// Of returns the pin of a certificate's public key.
func Of(c *x509.Certificate) Pin { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// OfKey returns the pin of a public key (*ecdsa.PublicKey, ed25519, ...).
func OfKey(pub any) (Pin, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Pin{}, fmt.Errorf("rootkey: %w", err)
	}
	return sha256.Sum256(der), nil
}

// String returns "sha256:<64 hex digits>".
func (p Pin) String() string { return "sha256:" + hex.EncodeToString(p[:]) }

// ErrNode is wrapped when a node or service cannot name a pin's key.
var ErrNode = errors.New("invalid node or service")

// Key returns the pin's key of service ("openssi-vprocd") on the Consul
// node named node, without the KV prefix "openssi/":
// "rootkeys/<node>/<service>", the node in lower case (Consul node names
// compare case-insensitively; ACL rules on keys do not). node may hold
// letters, digits, '.', '-' and '_' (not "." or ".."), service the same
// without '.'.
func Key(node, service string) (string, error) {
	if !segment(node, true) {
		return "", fmt.Errorf("rootkey: %w: node %.80q", ErrNode, node)
	}
	if !segment(service, false) {
		return "", fmt.Errorf("rootkey: %w: service %.80q", ErrNode, service)
	}
	return Prefix + strings.ToLower(node) + "/" + service, nil
}

// NodePrefix is the prefix of every pin of node, without "openssi/":
// what a node's root token may write. node must be valid for [Key].
func NodePrefix(node string) string { return Prefix + strings.ToLower(node) + "/" }

func segment(s string, dots bool) bool {
	if s == "" || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || dots && c == '.') {
			return false
		}
	}
	return true
}

// record is a pin as stored in KV.
type record struct {
	// SPKISHA256 is the pin in lower-case hex.
	SPKISHA256 string `json:"spki_sha256"`
}

// Encode returns the KV value of p: {"spki_sha256":"<64 hex digits>"}.
func Encode(p Pin) []byte {
	b, _ := json.Marshal(record{SPKISHA256: hex.EncodeToString(p[:])})
	return b
}

// ErrDecode is wrapped by [Decode] errors.
var ErrDecode = errors.New("not a root key pin")

// maxValue bounds a stored value: a pin is under 100 bytes.
const maxValue = 1024

// Decode parses a KV value written by [Encode]. It is strict: one JSON
// object whose spki_sha256 is 64 lower-case hex digits; other fields are
// ignored (a later version may add some), nothing but blanks may follow.
func Decode(data []byte) (Pin, error) {
	if len(data) > maxValue {
		return Pin{}, fmt.Errorf("rootkey: %w: %d bytes", ErrDecode, len(data))
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return Pin{}, fmt.Errorf("rootkey: %w: %w", ErrDecode, err)
	}
	var p Pin
	h := r.SPKISHA256
	if len(h) != 2*len(p) || strings.ToLower(h) != h {
		return Pin{}, fmt.Errorf("rootkey: %w: spki_sha256 %.80q is not %d lower-case hex digits", ErrDecode, h, 2*len(p))
	}
	if _, err := hex.Decode(p[:], []byte(h)); err != nil {
		return Pin{}, fmt.Errorf("rootkey: %w: spki_sha256: %w", ErrDecode, err)
	}
	return p, nil
}

// Verdict is what to do with a key a peer presents.
type Verdict int

const (
	// Refuse: the key is not the pinned one and no fetch is allowed now.
	Refuse Verdict = iota
	// Accept: the key is the pinned one.
	Accept
	// Fetch: read the pin again, tell [Cache.Learn], then compare.
	Fetch
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Fetch:
		return "fetch"
	}
	return "refuse"
}

// Fetch budget: any client can present any key naming any node, so a
// mismatch may cost a KV read only as often as this allows, for all keys
// together. A daemon's restart (a new key) is normally seen at once.
const (
	// FetchBurst is how many reads may follow each other at once.
	FetchBurst = 8
	// FetchEvery is how often one more read is allowed.
	FetchEvery = 250 * time.Millisecond
)

// Cache holds the pins a daemon has read and decides when to read one
// again. It is a pure core: the caller passes the time and does the reads;
// it is not safe for concurrent use. The zero value is ready.
type Cache struct {
	pins map[string]Pin
	// The read budget: tokens at time at.
	tokens float64
	at     time.Time
	primed bool
}

// Check decides about presented, the key a peer proved it holds, for the
// pin's key (see [Key]) at now: Accept when it is the pin read last, else
// Fetch when the budget allows a read (which it spends), else Refuse.
func (c *Cache) Check(key string, presented Pin, now time.Time) Verdict {
	if p, ok := c.pins[key]; ok && p == presented {
		return Accept
	}
	if !c.primed {
		c.tokens, c.at, c.primed = FetchBurst, now, true
	}
	if el := now.Sub(c.at); el > 0 {
		c.tokens = min(FetchBurst, c.tokens+float64(el)/float64(FetchEvery))
		c.at = now
	}
	if c.tokens < 1 {
		return Refuse
	}
	c.tokens--
	return Fetch
}

// Learn records what a read of key found: pin when found, nothing
// otherwise (the key is forgotten, so only pins that exist take room).
func (c *Cache) Learn(key string, pin Pin, found bool) {
	if !found {
		delete(c.pins, key)
		return
	}
	if c.pins == nil {
		c.pins = map[string]Pin{}
	}
	c.pins[key] = pin
}

// Pinned returns the pin read last for key.
func (c *Cache) Pinned(key string) (Pin, bool) {
	p, ok := c.pins[key]
	return p, ok
}
