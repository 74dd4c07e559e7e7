package coherence

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
)

const all = Attrs | Clean | Dirty

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		m    Mode
		want Cache
	}{
		{0, 0},
		{lockspace.NL, 0},
		{lockspace.CR, 0},
		{lockspace.CW, 0},
		{lockspace.PR, Attrs | Clean},
		{lockspace.PW, all},
		{lockspace.EX, all},
	} {
		if got := Allowed(tc.m); got != tc.want {
			t.Errorf("Allowed(%v) = %v, want %v", tc.m, got, tc.want)
		}
	}
}

// TestAllowedIsCoherent: for any two modes dlmd lets coexist, the caches
// they allow never let one node hold dirty data while another caches
// anything, nor two nodes hold dirty data.
func TestAllowedIsCoherent(t *testing.T) {
	for a := lockspace.NL; a <= lockspace.EX; a++ {
		for b := lockspace.NL; b <= lockspace.EX; b++ {
			if !lockspace.Compatible(a, b) {
				continue
			}
			ca, cb := Allowed(a), Allowed(b)
			if ca&Dirty != 0 && cb != 0 || cb&Dirty != 0 && ca != 0 {
				t.Errorf("%v (%v) and %v (%v) coexist", a, ca, b, cb)
			}
		}
	}
}

func TestOnBlocking(t *testing.T) {
	for _, tc := range []struct {
		held Mode
		c    Cache
		want Mode
		r    Release
	}{
		{EX, all, PR, Release{WriteBack: true, To: PR}},
		{EX, all, EX, Release{WriteBack: true, Invalidate: Attrs | Clean, To: NL}},
		{EX, Attrs, lockspace.CR, Release{To: PR}}, // PR lets a CR reader in
		{EX, Dirty, lockspace.CW, Release{WriteBack: true, Invalidate: Clean, To: NL}},
		{PR, Attrs | Clean, EX, Release{Invalidate: Attrs | Clean, To: NL}},
		{PR, Attrs | Clean, lockspace.PW, Release{Invalidate: Attrs | Clean, To: NL}},
		{PR, Attrs | Clean, PR, Release{To: PR}},           // compatible: nothing to do
		{PR, Attrs | Clean, lockspace.CR, Release{To: PR}}, // compatible
		{lockspace.CR, 0, EX, Release{To: NL}},             // not above what it holds
		{NL, 0, EX, Release{To: NL}},
		{0, 0, EX, Release{}},
	} {
		if got := OnBlocking(tc.held, tc.c, tc.want); got != tc.r {
			t.Errorf("OnBlocking(%v, %v, %v) = %+v, want %+v", tc.held, tc.c, tc.want, got, tc.r)
		}
	}
}

// step is one call of a scripted Inode and the actions it must return.
type step struct {
	call string // "begin 1 r", "begin 2 w", "end 1 attrs+clean", "granted EX", "cancelled", "refused", "blocking PR", "written 1", "synced", "lost"
	want string // the actions, "; "-joined; "error" for an error
}

func (i *Inode) do(t *testing.T, call string) ([]Action, error) {
	t.Helper()
	f := strings.Fields(call)
	mode := func(s string) Mode {
		m, err := lockspace.ParseMode(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var op uint64
	if len(f) > 1 {
		fmt.Sscan(f[1], &op)
	}
	switch f[0] {
	case "begin":
		a := Read
		if f[2] == "w" {
			a = Write
		}
		return i.Begin(op, a), nil
	case "end":
		var c Cache
		for _, name := range strings.Split(f[2], "+") {
			c |= map[string]Cache{"attrs": Attrs, "clean": Clean, "dirty": Dirty, "-": 0}[name]
		}
		return i.End(op, c)
	case "granted":
		return i.Granted(mode(f[1]))
	case "cancelled":
		return i.Cancelled()
	case "refused":
		return i.Refused()
	case "blocking":
		return i.Blocking(mode(f[1])), nil
	case "written":
		return i.WrittenBack(op), nil
	case "synced":
		i.Synced()
		return nil, nil
	case "lost":
		acts, dirty := i.Lost()
		if dirty {
			acts = append(acts, Action{Kind: 99}) // shown as Action(99): dirty data lost
		}
		return acts, nil
	}
	t.Fatalf("bad step %q", call)
	return nil, nil
}

func render(acts []Action) string {
	s := make([]string, len(acts))
	for k, a := range acts {
		s[k] = a.String()
	}
	return strings.Join(s, "; ")
}

func TestInode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
		held  Mode
		cache Cache
	}{
		{"a read takes PR and caches", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"end 1 attrs+clean", ""},
			{"begin 2 r", "run 2"},
			{"end 2 -", ""},
		}, PR, Attrs | Clean},
		{"a write converts up to EX, keeping the clean cache", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"end 1 attrs+clean", ""},
			{"begin 2 w", "request EX"},
			{"begin 3 r", ""}, // behind the write, in order
			{"granted EX", "run 2; run 3"},
			{"end 2 dirty", ""},
			{"end 3 -", ""},
		}, EX, all},
		{"a reader elsewhere: write back, keep a clean cache under PR", []step{
			{"begin 1 w", "request EX"},
			{"granted EX", "run 1"},
			{"end 1 attrs+dirty", ""},
			{"blocking PR", "write back 1"},
			{"written 1", "convert PR"},
		}, PR, Attrs | Clean},
		{"a writer elsewhere: write back, drop everything, NL", []step{
			{"begin 1 w", "request EX"},
			{"granted EX", "run 1"},
			{"end 1 attrs+dirty", ""},
			{"blocking EX", "write back 1"},
			{"written 1", "invalidate attrs+clean; convert NL"},
		}, NL, 0},
		{"a callback waits for the operation running, then one that came meanwhile asks again", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"blocking EX", ""},
			{"begin 2 r", ""}, // waits for the callback: no starving the other node
			{"end 1 attrs+clean", "invalidate attrs+clean; convert NL; request PR"},
			{"granted PR", "run 2"},
		}, PR, 0},
		{"a callback for less, then for more: served for more", []step{
			{"begin 1 w", "request EX"},
			{"granted EX", "run 1"},
			{"blocking PR", ""},
			{"blocking EX", ""},
			{"end 1 attrs+clean", "invalidate attrs+clean; convert NL"},
		}, NL, 0},
		{"a callback on a lock whose conversion up waits: cancel it first", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"end 1 attrs+clean", ""},
			{"begin 2 w", "request EX"},
			{"blocking EX", "cancel"},
			{"cancelled", "invalidate attrs+clean; convert NL; request EX"},
			{"granted EX", "run 2"},
		}, EX, 0},
		{"the grant came before the cancel: the callback is still served first", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"end 1 -", ""},
			{"begin 2 w", "request EX"},
			{"blocking EX", "cancel"},
			{"granted EX", "convert NL; request EX"},
		}, NL, 0},
		{"a compatible callback does nothing", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"blocking PR", ""},
			{"blocking CR", ""},
		}, PR, 0},
		{"fsync writes back on its own", []step{
			{"begin 1 w", "request EX"},
			{"granted EX", "run 1"},
			{"end 1 dirty", ""},
			{"synced", ""},
			{"blocking EX", "invalidate clean; convert NL"},
		}, NL, 0},
		{"the lock lost with dirty data: dropped and said", []step{
			{"begin 1 w", "request EX"},
			{"granted EX", "run 1"},
			{"end 1 attrs+dirty", ""},
			{"begin 2 w", "run 2"},
			{"lost", "invalidate attrs+dirty; Action(99)"},
		}, 0, 0},
		{"the lock lost with operations waiting: asked again", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"blocking EX", ""},
			{"begin 2 r", ""},
			{"lost", "request PR"},
		}, 0, 0},
		{"a late write back's answer after the lock was lost is ignored", []step{
			{"begin 1 w", "request EX"},
			{"granted EX", "run 1"},
			{"end 1 attrs+dirty", ""},
			{"blocking EX", "write back 1"},
			{"lost", "invalidate attrs+dirty; Action(99)"},
			{"begin 2 w", "request EX"},
			{"granted EX", "run 2"},
			{"end 2 attrs+dirty", ""},
			{"blocking EX", "write back 2"},
			{"written 1", ""}, // not op 2's data: still dirty, still writing
			{"written 2", "invalidate attrs+clean; convert NL"},
		}, NL, 0},
		{"an operation running when the lock was lost adds nothing at its end", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"lost", ""},
			{"begin 2 r", "request PR"},
			{"granted PR", "run 2"},
			{"end 1 attrs+clean", ""},
			{"blocking EX", ""}, // waits for op 2, not for the orphan
			{"end 2 attrs", "invalidate attrs; convert NL"},
		}, NL, 0},
		{"a refused conversion: the callback served, then asked again", []step{
			{"begin 1 r", "request PR"},
			{"granted PR", "run 1"},
			{"end 1 attrs+clean", ""},
			{"begin 2 w", "request EX"},
			{"blocking EX", "cancel"},
			{"refused", "invalidate attrs+clean; convert NL; request EX"}, // dlmd refused it (deadlock) before the cancel
			{"granted EX", "run 2"},
		}, EX, 0},
		{"a refusal with no callback asks again", []step{
			{"begin 1 w", "request EX"},
			{"refused", "request EX"},
			{"granted EX", "run 1"},
		}, EX, 0},
		{"the shell's mistakes are errors", []step{
			{"granted PR", "error"}, // nothing asked
			{"cancelled", "error"},
			{"refused", "error"},
			{"begin 1 r", "request PR"},
			{"granted NL", "error"}, // less than asked
			{"granted PR", "run 1"},
			{"end 2 -", "error"},     // no such operation
			{"end 1 dirty", "error"}, // dirty under PR: refused, not cached
		}, PR, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var i Inode
			for k, s := range tc.steps {
				acts, err := i.do(t, s.call)
				got := render(acts)
				if err != nil {
					got = "error"
				}
				if got != s.want {
					t.Fatalf("step %d %q: %q (%v), want %q", k, s.call, got, err, s.want)
				}
				if i.cache&^Allowed(i.held) != 0 {
					t.Fatalf("step %d %q: cache %v under %v", k, s.call, i.cache, i.held)
				}
			}
			if i.Held() != tc.held || i.Cache() != tc.cache {
				t.Errorf("at the end: %v with %v, want %v with %v", i.Held(), i.Cache(), tc.held, tc.cache)
			}
		})
	}
}

func TestEndErrors(t *testing.T) {
	var i Inode
	if _, err := i.End(7, 0); !errors.Is(err, ErrUnknownOp) {
		t.Errorf("End of no operation: %v", err)
	}
}
