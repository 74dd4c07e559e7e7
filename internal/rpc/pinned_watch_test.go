package rpc

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"testing"

	"github.com/openssi/openssi/internal/rootkey"
)

// watchedPins is an in-memory KV of pins answering blocking queries.
type watchedPins struct {
	pins
	cond    *sync.Cond
	version uint64
	waits   chan uint64 // each List call's wait index
}

func newWatchedPins() *watchedPins {
	w := &watchedPins{waits: make(chan uint64, 100), version: 1}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *watchedPins) set(key string, pin rootkey.Pin, found bool) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]rootkey.Pin{}
	}
	if found {
		w.m[key] = pin
	} else {
		delete(w.m, key)
	}
	w.version++
	w.cond.Broadcast()
	return w.version
}

func (w *watchedPins) list(ctx context.Context, wait uint64) (map[string]rootkey.Pin, uint64, error) {
	w.waits <- wait
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.cond.Broadcast()
	})
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for wait != 0 && w.version <= wait && ctx.Err() == nil {
		w.cond.Wait()
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	out := make(map[string]rootkey.Pin, len(w.m))
	for k, p := range w.m {
		out[k] = p
	}
	return out, w.version, nil
}

// synced waits until the source has applied the listing of version v:
// its next blocking query waits on v or later.
func (w *watchedPins) synced(t *testing.T, v uint64) {
	t.Helper()
	for wait := range w.waits {
		if wait >= v {
			return
		}
	}
}

// TestPinnedWatch: a peer's new key (its restart) reaches the cache by
// the watch, without a read in a handshake, and a deleted pin is no
// longer trusted.
func TestPinnedWatch(t *testing.T) {
	kv := newWatchedPins()
	srv, err := NewPinnedSource(PinnedConfig{ID: spiffeOf(t, "openssi-vprocd.node2"), Fetch: kv.fetch, List: kv.list})
	if err != nil {
		t.Fatal(err)
	}
	a := newPinned(t, &kv.pins, "openssi-vprocd.node1")
	kv.synced(t, kv.set(a.Key(), a.Pin(), true))
	if _, err := srv.verify([]*x509.Certificate{a.Leaf()}, ""); err != nil {
		t.Fatalf("pinned peer: %v", err)
	}
	// Node 1's vprocd restarts with a new key.
	a2 := newPinned(t, &kv.pins, "openssi-vprocd.node1")
	kv.synced(t, kv.set(a2.Key(), a2.Pin(), true))
	if _, err := srv.verify([]*x509.Certificate{a2.Leaf()}, ""); err != nil {
		t.Fatalf("restarted peer: %v", err)
	}
	if got := kv.count(); got != 0 {
		t.Fatalf("%d reads in handshakes, want none: the watch feeds the cache", got)
	}
	// Node 1's pin is deleted: its key is refused.
	kv.synced(t, kv.set(a2.Key(), rootkey.Pin{}, false))
	if _, ok := srv.pinned(a2.Key()); ok {
		t.Fatal("a deleted pin is still cached")
	}
	if _, err := srv.verify([]*x509.Certificate{a2.Leaf()}, ""); !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("deleted pin: %v, want refused", err)
	}
	// Close ends the watch (its blocking query) and waits for it.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}
