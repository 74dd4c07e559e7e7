package level

import (
	"reflect"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

func TestRate(t *testing.T) {
	at := func(pid int32, start uint64, busy, t time.Duration) Sample {
		return Sample{PID: pid, Start: start, Busy: busy, At: t0.Add(t)}
	}
	for _, tc := range []struct {
		name      string
		prev, cur Sample
		want      float64
		ok        bool
	}{
		{"a busy thread", at(7, 100, time.Second, 0), at(7, 100, 3*time.Second, 2*time.Second), 1, true},
		{"two threads running or waiting", at(7, 100, 0, 0), at(7, 100, 4*time.Second, 2*time.Second), 2, true},
		{"idle", at(7, 100, time.Second, 0), at(7, 100, time.Second, time.Second), 0, true},
		{"another process under the pid", at(7, 100, 0, 0), at(7, 101, time.Second, time.Second), 0, false},
		{"another pid", at(7, 100, 0, 0), at(8, 100, time.Second, time.Second), 0, false},
		{"no time between", at(7, 100, 0, time.Second), at(7, 100, time.Second, time.Second), 0, false},
		{"a count going back (a thread ended)", at(7, 100, 3*time.Second, 0), at(7, 100, time.Second, time.Second), 0, false},
	} {
		if l, ok := Rate(tc.prev, tc.cur); l != tc.want || ok != tc.ok {
			t.Errorf("%s: Rate = %v, %v; want %v, %v", tc.name, l, ok, tc.want, tc.ok)
		}
	}
}

func TestTrackerProcs(t *testing.T) {
	x := func(n int32) cpid.CPID { return cpid.MustMake(1, n) }
	sample := func(n int32, busy time.Duration, at time.Duration) Sample {
		return Sample{PID: n, Start: 1, Busy: busy, At: t0.Add(at)}
	}
	cand := func(n int32, busy, at time.Duration) Candidate {
		return Candidate{ID: x(n), Registered: true, Sample: sample(n, busy, at), Sampled: true, Load: -1}
	}
	tr := NewTracker(1, 10*time.Second)
	// First period: every load is being measured.
	first := []Candidate{cand(1, 0, 0), cand(2, 0, 0), cand(3, 0, 0),
		{ID: x(4), Sample: sample(4, 0, 0), Sampled: true, Load: -1},                        // not registered
		{ID: x(5), Registered: true, NotMovable: "not migratable", Sampled: true, Load: -1}, // cannot move
		{ID: x(6), Registered: true, Load: 0.5}}                                             // given outright
	procs, sk := tr.Procs(t0, first)
	if want := (Skipped{Unregistered: 1, NotMovable: 1, Measuring: 3}); sk != want || len(procs) != 1 || procs[0].Load != 0.5 {
		t.Fatalf("first period: %+v, %+v", procs, sk)
	}
	if s := sk.String(); s != "1 not registered for load leveling, 1 not movable now, 3 first measured this period" {
		t.Errorf("skipped: %q", s)
	}
	// Second period, 2s on: loads from the samples; 3 restarted under
	// another start time and is measured again.
	second := []Candidate{cand(1, 2*time.Second, 2*time.Second), cand(2, time.Second, 2*time.Second),
		{ID: x(3), Registered: true, Sample: Sample{PID: 3, Start: 2, At: t0.Add(2 * time.Second)}, Sampled: true, Load: -1}}
	procs, sk = tr.Procs(t0.Add(2*time.Second), second)
	want := []Proc{{ID: x(1), Node: 1, Load: 1}, {ID: x(2), Node: 1, Load: 0.5}}
	if !reflect.DeepEqual(procs, want) || sk != (Skipped{Measuring: 1}) {
		t.Fatalf("second period: %+v, %+v; want %+v", procs, sk, want)
	}
	// 1 moved to node 2; 2's move failed; 9 arrived from node 3.
	moved := t0.Add(3 * time.Second)
	tr.Moved(x(1), 1, 2, moved, 1)
	tr.Failed(x(2), moved)
	tr.Moved(x(9), 3, 1, moved, 0)
	third := []Candidate{cand(2, 3*time.Second, 4*time.Second), cand(3, 0, 4*time.Second), cand(9, 0, 4*time.Second)}
	procs, sk = tr.Procs(t0.Add(4*time.Second), third)
	want = []Proc{{ID: x(1), Node: 2, From: 1, Load: 1, LastMove: moved}}
	if !reflect.DeepEqual(procs, want) || sk != (Skipped{Measuring: 2, Failed: 1}) {
		t.Fatalf("third period: %+v, %+v; want %+v", procs, sk, want)
	}
	fourth := []Candidate{cand(2, 4*time.Second, 6*time.Second), cand(3, time.Second, 6*time.Second), cand(9, 2*time.Second, 6*time.Second)}
	procs, _ = tr.Procs(t0.Add(6*time.Second), fourth)
	want = []Proc{{ID: x(1), Node: 2, From: 1, Load: 1, LastMove: moved}, {ID: x(3), Node: 1, Load: 0.5},
		{ID: x(9), Node: 1, From: 3, Load: 1, LastMove: moved}}
	if !reflect.DeepEqual(procs, want) {
		t.Fatalf("fourth period: %+v; want %+v", procs, want)
	}
	// After the cool-down: the failed one is tried again, the moves are
	// forgotten.
	fifth := []Candidate{cand(2, 5*time.Second, 14*time.Second), cand(3, 2*time.Second, 14*time.Second), cand(9, 3*time.Second, 14*time.Second)}
	procs, _ = tr.Procs(t0.Add(14*time.Second), fifth)
	if len(procs) != 3 || procs[0].ID != x(2) || !procs[2].LastMove.IsZero() {
		t.Fatalf("after the cool-down: %+v", procs)
	}
	// A process gone is forgotten.
	procs, _ = tr.Procs(t0.Add(16*time.Second), nil)
	if len(procs) != 0 || len(tr.samples) != 0 || len(tr.moves) != 0 || len(tr.failed) != 0 {
		t.Fatalf("nothing here: %+v, %d samples, %d moves, %d failed", procs, len(tr.samples), len(tr.moves), len(tr.failed))
	}
}

func TestHistory(t *testing.T) {
	h := NewHistory(3)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	quiet := Decision{Kind: KindBalanced, From: 1, To: 2, Reason: "no move: balanced 1"}
	h.Add(EntryOf(at(0), quiet))
	quiet.Reason = "no move: balanced 2"
	h.Add(EntryOf(at(2), quiet))
	h.Add(EntryOf(at(4), quiet))
	es := h.Entries()
	if len(es) != 1 || es[0].Count != 3 || !es[0].First.Equal(at(0)) || !es[0].Last.Equal(at(4)) || es[0].Reason != "no move: balanced 2" {
		t.Fatalf("three quiet periods: %+v", es)
	}
	// Another pair, a move and a repeat of it are not folded.
	h.Add(EntryOf(at(6), Decision{Kind: KindBalanced, From: 1, To: 3}))
	mv := Entry{First: at(8), Last: at(8), Count: 1, Kind: KindMoved, Proc: cpid.MustMake(1, 5), From: 1, To: 3}
	h.Add(mv)
	h.Add(mv)
	es = h.Entries()
	if len(es) != 3 || es[0].To != 3 || es[1].Kind != KindMoved || es[2].Kind != KindMoved {
		t.Fatalf("bounded to 3, oldest out: %+v", es)
	}
	es[0].Reason = "changed"
	if h.Entries()[0].Reason == "changed" {
		t.Error("Entries shares its slice")
	}
	if NewHistory(0).size != DefaultHistory {
		t.Error("the default size")
	}
}
