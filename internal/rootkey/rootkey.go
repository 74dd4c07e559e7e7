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
// one learn the new pin from a watch on [Prefix], or, failing that, read
// the pin again when a handshake presents another key. [Cache]
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
	// Refuse: the key is not the cached pin, and the pin may not be read
	// again now (this key's read budget is spent).
	Refuse Verdict = iota
	// Accept: the key is the cached pin.
	Accept
	// Fetch: read the pin again, tell [Cache.Learn] (or [Cache.Abort] when
	// the read failed), then compare with [Cache.Pinned].
	Fetch
	// Join: a read of this pin is in flight; wait for its end, then
	// compare with [Cache.Pinned]. It costs no read.
	Join
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Fetch:
		return "fetch"
	case Join:
		return "join"
	}
	return "refuse"
}

// The fallback read budget, per pin's key. The pins reach a daemon by a
// watch on [Prefix] ([Cache.Replace]); a handshake whose key is not the
// cached pin may read that one pin again only as often as this allows, so
// that anyone who can reach the port, naming node X with ever new keys,
// delays only X's fallback reads, never another node's.
const (
	// FetchBurst is how many reads of one key may follow each other.
	FetchBurst = 2
	// FetchEvery is how often one more read of a key is allowed.
	FetchEvery = time.Second
	// MaxBudgets bounds the keys whose spent budget is remembered; past
	// it the least recently refilled is forgotten (it gets a full budget
	// again: only the attacker's own keys, or reads, can be gained).
	MaxBudgets = 4096
)

// bucket is one key's read budget: tokens at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

// Cache holds the pins a daemon knows and decides when to read one again.
// It is a pure core: the caller passes the time, does the reads and the
// watch; it is not safe for concurrent use. The zero value is ready.
type Cache struct {
	pins    map[string]Pin
	budgets map[string]bucket
	// flights are the keys being read, with the generation at the start
	// of the read.
	flights map[string]uint64
	// gen counts the watch's updates (Replace): a read that started
	// before one is older than the watch's view, and is dropped.
	gen uint64
}

// Check decides about presented, the key a peer proved it holds, for the
// pin's key (see [Key]) at now: Accept when it is the cached pin, else Join
// when a read of key is in flight, else Fetch when key's budget allows a
// read (which it spends, and the read is then in flight until Learn or
// Abort), else Refuse.
func (c *Cache) Check(key string, presented Pin, now time.Time) Verdict {
	if p, ok := c.pins[key]; ok && p == presented {
		return Accept
	}
	if _, ok := c.flights[key]; ok {
		return Join
	}
	b, ok := c.budgets[key]
	if !ok {
		c.makeRoom(now)
		b = bucket{tokens: FetchBurst, at: now}
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(FetchBurst, b.tokens+float64(el)/float64(FetchEvery))
		b.at = now
	}
	if b.tokens < 1 {
		c.setBudget(key, b)
		return Refuse
	}
	b.tokens--
	c.setBudget(key, b)
	if c.flights == nil {
		c.flights = map[string]uint64{}
	}
	c.flights[key] = c.gen
	return Fetch
}

func (c *Cache) setBudget(key string, b bucket) {
	if c.budgets == nil {
		c.budgets = map[string]bucket{}
	}
	c.budgets[key] = b
}

// makeRoom keeps the budgets under MaxBudgets before one is added: it
// forgets the ones refilled by now (a full budget is the default), then,
// if none was, the one refilled least recently.
func (c *Cache) makeRoom(now time.Time) {
	if len(c.budgets) < MaxBudgets {
		return
	}
	var oldest string
	var at time.Time
	for k, b := range c.budgets {
		if b.tokens+float64(now.Sub(b.at))/float64(FetchEvery) >= FetchBurst {
			delete(c.budgets, k)
			continue
		}
		if oldest == "" || b.at.Before(at) || b.at.Equal(at) && k < oldest {
			oldest, at = k, b.at
		}
	}
	if len(c.budgets) >= MaxBudgets {
		delete(c.budgets, oldest)
	}
}

// Learn ends the read of key Check allowed with what it found: pin when
// found, else nothing (the key is forgotten). The result is dropped when
// the watch updated the cache meanwhile ([Cache.Replace]): its view is at
// least as new.
func (c *Cache) Learn(key string, pin Pin, found bool) {
	g, ok := c.flights[key]
	delete(c.flights, key)
	if ok && g != c.gen {
		return
	}
	c.set(key, pin, found)
}

// Abort ends the read of key Check allowed, which failed.
func (c *Cache) Abort(key string) { delete(c.flights, key) }

func (c *Cache) set(key string, pin Pin, found bool) {
	if !found {
		delete(c.pins, key)
		return
	}
	if c.pins == nil {
		c.pins = map[string]Pin{}
	}
	c.pins[key] = pin
}

// Replace makes pins (keys of [Key]) the whole of the cache: what the watch
// on [Prefix] read. A pin missing from it (deleted) is no longer trusted.
// Reads in flight still end with Learn, which then drops their result.
func (c *Cache) Replace(pins map[string]Pin) {
	c.gen++
	c.pins = make(map[string]Pin, len(pins))
	for k, p := range pins {
		c.pins[k] = p
	}
}

// Pinned returns the pin cached for key.
func (c *Cache) Pinned(key string) (Pin, bool) {
	p, ok := c.pins[key]
	return p, ok
}
