package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"
)

// Prefix is the Consul KV prefix under which all OpenSSI data lives.
const Prefix = "openssi/"

// MaxKeyLen bounds the length of a key (without Prefix).
const MaxKeyLen = 512

// Sentinel errors of the KV layer.
var (
	// ErrInvalidKey is wrapped by every key or prefix validation error.
	ErrInvalidKey = errors.New("invalid key")
	// ErrDecode is wrapped when a stored value is not the JSON expected.
	ErrDecode = errors.New("cannot decode value")
)

// ValidateKey checks a key given without Prefix: non-empty, at most
// MaxKeyLen bytes, valid UTF-8 without control characters, no leading or
// trailing '/', and no empty, "." or ".." segment.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("consul: key: %w: empty", ErrInvalidKey)
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("consul: key %q: %w: trailing '/'", key, ErrInvalidKey)
	}
	return validatePath(key)
}

// ValidatePrefix checks a key prefix given without Prefix, as for List and
// Watch: "" (everything) or a key that may end in '/'.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validatePath(strings.TrimSuffix(prefix, "/"))
}

func validatePath(p string) error {
	if p == "" {
		return fmt.Errorf("consul: key %q: %w: empty", p, ErrInvalidKey)
	}
	if len(p) > MaxKeyLen {
		return fmt.Errorf("consul: key %.40q...: %w: longer than %d bytes", p, ErrInvalidKey, MaxKeyLen)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("consul: key %q: %w: not UTF-8", p, ErrInvalidKey)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("consul: key %q: %w: leading '/'", p, ErrInvalidKey)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fmt.Errorf("consul: key %q: %w: control character", p, ErrInvalidKey)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("consul: key %q: %w: empty segment", p, ErrInvalidKey)
		case ".", "..":
			return fmt.Errorf("consul: key %q: %w: %q segment", p, ErrInvalidKey, seg)
		}
	}
	return nil
}

// Entry is one key read by [KV.List].
type Entry struct {
	// Key is the key without Prefix.
	Key string
	// Value is the stored JSON, undecoded (see Decode).
	Value []byte
	// CreateIndex and ModifyIndex are Consul's indexes; ModifyIndex is what
	// CAS takes.
	CreateIndex, ModifyIndex uint64
	// LockIndex counts the successful acquisitions of the key.
	LockIndex uint64
	// Session is the session holding the key, "" if none.
	Session string
}

// Decode unmarshals the entry's JSON value into v; an error names the key and
// wraps ErrDecode.
func (e Entry) Decode(v any) error { return decode(e.Key, e.Value, v) }

func decode(key string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("consul: key %q: %w: %w", key, ErrDecode, err)
	}
	return nil
}

func encode(key string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("consul: key %q: encode: %w", key, err)
	}
	return b, nil
}

// KV is typed access to the "openssi/" part of Consul's KV store: keys are
// given without Prefix and validated, values are JSON. Decoding is lenient
// about unknown fields so that nodes running different versions can share
// data during a rolling upgrade. A KV is safe for concurrent use.
type KV struct {
	client *api.Client
}

// NewKV returns a KV using client.
func NewKV(client *api.Client) *KV { return &KV{client: client} }

// Key validates key and returns the full Consul key: Key("clms/view") is
// "openssi/clms/view".
func (kv *KV) Key(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return Prefix + key, nil
}

func (kv *KV) pair(key string, v any) (*api.KVPair, error) {
	full, err := kv.Key(key)
	if err != nil {
		return nil, err
	}
	b, err := encode(key, v)
	if err != nil {
		return nil, err
	}
	return &api.KVPair{Key: full, Value: b}, nil
}

func wopts(ctx context.Context) *api.WriteOptions { return (&api.WriteOptions{}).WithContext(ctx) }

// Get reads key into v. index is the key's ModifyIndex, the value to pass to
// CAS (0 when the key is absent, which CAS treats as "create").
func (kv *KV) Get(ctx context.Context, key string, v any) (index uint64, found bool, err error) {
	return kv.get(ctx, key, v, &api.QueryOptions{})
}

// GetConsistent is Get with a consistent read: the Raft leader confirms
// with a quorum of servers that it still leads before answering, so it
// fails when this node cannot reach a quorum.
func (kv *KV) GetConsistent(ctx context.Context, key string, v any) (index uint64, found bool, err error) {
	return kv.get(ctx, key, v, &api.QueryOptions{RequireConsistent: true})
}

func (kv *KV) get(ctx context.Context, key string, v any, q *api.QueryOptions) (uint64, bool, error) {
	full, err := kv.Key(key)
	if err != nil {
		return 0, false, err
	}
	p, _, err := kv.client.KV().Get(full, q.WithContext(ctx))
	if err != nil {
		return 0, false, fmt.Errorf("consul: get %q: %w", key, err)
	}
	if p == nil {
		return 0, false, nil
	}
	if err := decode(key, p.Value, v); err != nil {
		return p.ModifyIndex, true, err
	}
	return p.ModifyIndex, true, nil
}

// Put writes v to key unconditionally.
func (kv *KV) Put(ctx context.Context, key string, v any) error {
	p, err := kv.pair(key, v)
	if err != nil {
		return err
	}
	if _, err := kv.client.KV().Put(p, wopts(ctx)); err != nil {
		return fmt.Errorf("consul: put %q: %w", key, err)
	}
	return nil
}

// CAS writes v to key only if the key's ModifyIndex is still index; index 0
// creates the key only if it is absent. ok is false when another writer got
// there first: re-read and retry.
func (kv *KV) CAS(ctx context.Context, key string, v any, index uint64) (ok bool, err error) {
	p, err := kv.pair(key, v)
	if err != nil {
		return false, err
	}
	p.ModifyIndex = index
	ok, _, err = kv.client.KV().CAS(p, wopts(ctx))
	if err != nil {
		return false, fmt.Errorf("consul: cas %q: %w", key, err)
	}
	return ok, nil
}

// Delete removes key; deleting an absent key is not an error.
func (kv *KV) Delete(ctx context.Context, key string) error {
	full, err := kv.Key(key)
	if err != nil {
		return err
	}
	if _, err := kv.client.KV().Delete(full, wopts(ctx)); err != nil {
		return fmt.Errorf("consul: delete %q: %w", key, err)
	}
	return nil
}

// Wait makes a read a blocking query: it returns once the index of what it
// reads passes Index, or after Time (0: Consul's default, 5 minutes). The
// zero Wait reads at once.
type Wait struct {
	Index uint64
	Time  time.Duration
}

// List returns the entries under prefix (without Prefix; "" for all of
// openssi/) in key order, and the query index to wait on next (see [Wait]
// and [Watch]).
func (kv *KV) List(ctx context.Context, prefix string, w Wait) ([]Entry, uint64, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, 0, err
	}
	q := &api.QueryOptions{WaitIndex: w.Index, WaitTime: w.Time}
	pairs, meta, err := kv.client.KV().List(Prefix+prefix, q.WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("consul: list %q: %w", prefix, err)
	}
	return entries(pairs), meta.LastIndex, nil
}

func entries(pairs api.KVPairs) []Entry {
	out := make([]Entry, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, Entry{
			Key:         strings.TrimPrefix(p.Key, Prefix),
			Value:       p.Value,
			CreateIndex: p.CreateIndex,
			ModifyIndex: p.ModifyIndex,
			LockIndex:   p.LockIndex,
			Session:     p.Session,
		})
	}
	return out
}

// Acquire writes v to key and locks it for session, if no other session
// holds it (and no lock-delay is pending). It returns whether the lock is
// now held by session; re-acquiring one's own lock succeeds and updates v.
func (kv *KV) Acquire(ctx context.Context, key, session string, v any) (bool, error) {
	p, err := kv.pair(key, v)
	if err != nil {
		return false, err
	}
	p.Session = session
	ok, _, err := kv.client.KV().Acquire(p, wopts(ctx))
	if err != nil {
		return false, fmt.Errorf("consul: acquire %q: %w", key, err)
	}
	return ok, nil
}
