package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

func TestSweeperDecides(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []LockspaceRecord{
		{Name: "~1000.idle"}, {Name: "~1000.busy"}, {Name: "kept", Explicit: true},
		{Name: "openssi.clmsd", Config: lockspace.Config{System: true}},
	}
	w := newSweeper(time.Minute)
	steps := []struct {
		at    time.Duration
		recs  []LockspaceRecord
		inUse map[string]bool
		want  []string
	}{
		{0, recs, map[string]bool{"~1000.busy": true}, nil},
		{30 * time.Second, recs, map[string]bool{"~1000.busy": true}, nil},
		{time.Minute, recs, map[string]bool{}, []string{"~1000.idle"}},
		// busy went unused at 1m: its grace starts then.
		{90 * time.Second, recs[1:], map[string]bool{}, nil},
		{2 * time.Minute, recs[1:], map[string]bool{}, []string{"~1000.busy"}},
		{time.Hour, recs[2:], map[string]bool{}, nil},
	}
	for _, st := range steps {
		if got := w.step(t0.Add(st.at), st.recs, st.inUse); !slices.Equal(got, st.want) {
			t.Fatalf("at +%v: removed %v, want %v", st.at, got, st.want)
		}
	}
	if len(w.unused) != 0 {
		t.Fatalf("sweeper still tracks %v", w.unused)
	}
}

// TestUnusedLockspacesRemoved: a lockspace made on first use loses its
// record once it has had no lock anywhere for the grace time; one with a
// lock, one created explicitly and one its owner changed stay.
func TestUnusedLockspacesRemoved(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := c.userClient(ctx, 2, 1000)
	for _, ls := range []string{"gone", "held", "changed"} {
		l, err := alice.Lock(ctx, ls, "r", dlm.EX)
		if err != nil {
			t.Fatal(err)
		}
		if ls != "held" {
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := alice.CreateLockspace(ctx, "made"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.ChmodLockspace(ctx, "changed", 0o600); err != nil {
		t.Fatal(err)
	}
	api := NewAPI(c.nodes[1].srv) // node 1 is the coordinator
	t0 := time.Now()
	waitFor(t, 5*time.Second, "a sweep to see gone's lock released", func() bool {
		_, err := api.Sweep(ctx, t0)
		api.mu.Lock()
		defer api.mu.Unlock()
		_, marked := api.sweep.unused["~1000.gone"]
		return err == nil && marked
	})
	if removed, err := api.Sweep(ctx, t0.Add(DefaultLockspaceGrace-time.Second)); err != nil || removed != nil {
		t.Fatalf("a sweep within the grace time removed %v, %v", removed, err)
	}
	removed, err := api.Sweep(ctx, t0.Add(DefaultLockspaceGrace))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"~1000.gone"}) {
		t.Fatalf("removed %v, want [~1000.gone]", removed)
	}
	l, err := api.ListLockspaces(as(ctx, 1000, 1000), &dlmv1.ListLockspacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range l.GetLockspaces() {
		names = append(names, i.GetName())
	}
	if !slices.Equal(names, []string{"changed", "held", "made"}) {
		t.Fatalf("alice's lockspaces after the sweep: %v", names)
	}
	if removed, err := NewAPI(c.nodes[2].srv).Sweep(ctx, t0.Add(time.Hour)); err != nil || removed != nil {
		t.Fatalf("node 2, not the coordinator, swept: %v, %v", removed, err)
	}
}
