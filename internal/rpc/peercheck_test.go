package rpc

import (
	"context"
	"testing"
	"time"
)

// TestHolderCache: a holder is asked once per CacheFor; Forget (a
// membership change of the number) makes the next call ask again, and an
// answer asked for before a Forget is not kept; no cache asks every time.
func TestHolderCache(t *testing.T) {
	now := time.Unix(100, 0)
	holders := map[uint32]string{1: "a", 2: "b"}
	asks := 0
	var during func()
	p := &PeerCheck{Prefix: "t", CacheFor: time.Second, now: func() time.Time { return now },
		NodeName: func(_ context.Context, n uint32) (string, error) {
			asks++
			if during != nil {
				during()
			}
			return holders[n], nil
		}}
	step := func(what string, n uint32, want string, wantAsks int) {
		t.Helper()
		got, err := p.Holder(context.Background(), n)
		if err != nil || got != want || asks != wantAsks {
			t.Fatalf("%s: Holder(%d) = %q, %v after %d asks; want %q after %d", what, n, got, err, asks, want, wantAsks)
		}
	}
	step("first", 1, "a", 1)
	step("cached", 1, "a", 1)
	step("another number", 2, "b", 2)
	now = now.Add(999 * time.Millisecond)
	step("still cached", 1, "a", 2)
	now = now.Add(time.Millisecond)
	step("CacheFor passed", 1, "a", 3)
	holders[1] = "c"
	step("changed, not yet told", 1, "a", 3)
	p.Forget(1)
	step("forgotten", 1, "c", 4)
	step("cached again", 1, "c", 4)

	// A Forget while a lookup is under way: its answer may predate the
	// change, so it is used once but not kept.
	p.Forget(1)
	during = func() { during = nil; p.Forget(1) }
	step("forgotten during the lookup", 1, "c", 5)
	step("not kept", 1, "c", 6)

	// Unknown holders are not cached.
	if _, err := p.Holder(context.Background(), 9); err == nil || asks != 7 {
		t.Fatalf("unknown: %v after %d asks", err, asks)
	}
	if _, err := p.Holder(context.Background(), 9); err == nil || asks != 8 {
		t.Fatalf("unknown again: %v after %d asks", err, asks)
	}

	p.CacheFor = 0
	step("no cache", 2, "b", 9)
	step("no cache again", 2, "b", 10)
}
