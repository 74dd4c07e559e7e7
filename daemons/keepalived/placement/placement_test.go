package placement

import (
	"fmt"
	"testing"
	"time"
)

func upSet(ns ...uint32) map[uint32]bool {
	m := map[uint32]bool{}
	for _, n := range ns {
		m[n] = true
	}
	return m
}

func TestNodes(t *testing.T) {
	for _, tc := range []struct {
		primary uint32
		backups []uint32
		up      map[uint32]bool
		want    string
	}{
		{0, nil, upSet(3, 1, 2), "[1 2 3]"},
		{2, nil, upSet(3, 1, 2), "[2 1 3]"},
		{2, nil, upSet(1, 3), "[2 1 3]"},
		{2, []uint32{3}, upSet(1, 2, 3), "[2 3]"},
		{2, []uint32{3, 2, 1, 3}, upSet(1, 2, 3), "[2 3 1]"},
		{0, []uint32{3, 1}, upSet(1, 2, 3), "[3 1]"},
	} {
		if got := fmt.Sprint(Nodes(tc.primary, tc.backups, tc.up)); got != tc.want {
			t.Errorf("Nodes(%d, %v, %v) = %s, want %s", tc.primary, tc.backups, tc.up, got, tc.want)
		}
	}
}

// TestChoose: primary and backups, last node and round robin, with nodes
// coming and going.
func TestChoose(t *testing.T) {
	list := []uint32{2, 3, 1} // primary 2, backups 3, 1
	for _, tc := range []struct {
		name  string
		rule  Rule
		up    map[uint32]bool
		last  uint32
		unfit map[uint32]bool
		want  uint32
	}{
		{"first start: the primary", LastNode, upSet(1, 2, 3), 0, nil, 2},
		{"first start, primary down: the first backup", LastNode, upSet(1, 3), 0, nil, 3},
		{"first start, only the last backup up", LastNode, upSet(1), 0, nil, 1},
		{"nothing up", LastNode, upSet(), 0, nil, 0},
		{"last node up: stays", LastNode, upSet(1, 2, 3), 1, nil, 1},
		{"primary back up: no move back", LastNode, upSet(1, 2, 3), 3, nil, 3},
		{"last node down: the primary", LastNode, upSet(1, 2), 3, nil, 2},
		{"last node down, primary down: the next backup", LastNode, upSet(1), 3, nil, 1},
		{"giving up on the primary: the first backup", LastNode, upSet(1, 2, 3), 2, upSet(2), 3},
		{"giving up on a backup: the primary", LastNode, upSet(1, 2, 3), 3, upSet(3), 2},
		{"giving up, nobody else fit", LastNode, upSet(1, 2, 3), 2, upSet(1, 2, 3), 0},
		{"last not in the list: the primary", LastNode, upSet(1, 2, 3, 4), 4, nil, 2},
		{"round robin: the next after the last", RoundRobin, upSet(1, 2, 3), 2, nil, 3},
		{"round robin wraps around", RoundRobin, upSet(1, 2, 3), 1, nil, 2},
		{"round robin skips a down node", RoundRobin, upSet(1, 2), 2, nil, 1},
		{"round robin skips an unfit node", RoundRobin, upSet(1, 2, 3), 2, upSet(3), 1},
		{"round robin, only the last node left", RoundRobin, upSet(2), 2, nil, 2},
		{"round robin, last node unfit and alone", RoundRobin, upSet(2), 2, upSet(2), 0},
		{"round robin first start: the primary", RoundRobin, upSet(1, 2, 3), 0, nil, 2},
		{"round robin after a dead node that is not listed", RoundRobin, upSet(1, 3), 9, nil, 3},
	} {
		if got := Choose(tc.rule, list, tc.up, tc.last, tc.unfit); got != tc.want {
			t.Errorf("%s: Choose = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestParseRule(t *testing.T) {
	for in, want := range map[string]Rule{"": LastNode, "last_node": LastNode, "round_robin": RoundRobin} {
		if r, err := ParseRule(in); err != nil || r != want {
			t.Errorf("ParseRule(%q) = %v, %v", in, r, err)
		}
		if in != "" && want.String() != in {
			t.Errorf("%v.String() = %q", want, want.String())
		}
	}
	if _, err := ParseRule("primary"); err == nil {
		t.Error("ParseRule(primary) accepted")
	}
}

// TestRetry: R failures within D give the application up on this node;
// older failures no longer count; restarts back off while failures keep
// coming.
func TestRetry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := time.Second
	for _, tc := range []struct {
		name    string
		retries int
		within  time.Duration
		at      []time.Duration
		want    []string // per failure: "restart AFTER" or "give-up"
	}{
		{"three within a minute", 3, time.Minute, []time.Duration{0, 10 * s, 20 * s},
			[]string{"restart 0s", "restart 100ms", "give-up"}},
		{"spread out: never given up", 3, time.Minute, []time.Duration{0, 40 * s, 80 * s, 120 * s, 160 * s},
			[]string{"restart 0s", "restart 100ms", "restart 100ms", "restart 100ms", "restart 100ms"}},
		{"a failure exactly D later no longer counts the first", 2, time.Minute, []time.Duration{0, 60 * s},
			[]string{"restart 0s", "restart 0s"}},
		{"backoff doubles up to the maximum", 0, time.Hour, []time.Duration{0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s, 8 * s},
			[]string{"restart 0s", "restart 100ms", "restart 200ms", "restart 400ms", "restart 800ms", "restart 1.6s", "restart 3.2s", "restart 5s", "restart 5s"}},
		{"one retry: the first failure gives up", 1, time.Minute, []time.Duration{0}, []string{"give-up"}},
	} {
		r := &Retry{Retries: tc.retries, Within: tc.within}
		for i, at := range tc.at {
			v := r.Failed(t0.Add(at))
			got := "give-up"
			if !v.GiveUp {
				got = "restart " + v.After.String()
			}
			if got != tc.want[i] {
				t.Errorf("%s: failure %d at %v: %s, want %s", tc.name, i, at, got, tc.want[i])
			}
		}
	}
	r := &Retry{Retries: 2, Within: time.Minute}
	r.Failed(t0)
	r.Reset()
	if v := r.Failed(t0.Add(s)); v.GiveUp || v.Count != 1 {
		t.Errorf("after Reset: %+v", v)
	}
}
