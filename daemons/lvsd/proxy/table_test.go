package proxy

import (
	"net/netip"
	"testing"
)

// TestTable steps the connection table through scripted operations and
// checks which aborts run and what is left.
func TestTable(t *testing.T) {
	a := netip.MustParseAddrPort("10.0.0.2:80")
	b := netip.MustParseAddrPort("10.0.0.3:80")
	type op struct {
		do      string // add, pick, unpick, remove, drop, close
		id      uint64
		backend netip.AddrPort
		wantOK  bool
		aborted []uint64 // for drop and close, in any order
	}
	tests := []struct {
		name    string
		max     int
		ops     []op
		wantLen int
	}{
		{"drop ends only its backend's connections", 8, []op{
			{do: "add", id: 1, wantOK: true},
			{do: "add", id: 2, wantOK: true},
			{do: "add", id: 3, wantOK: true},
			{do: "pick", id: 1, backend: a, wantOK: true},
			{do: "pick", id: 2, backend: b, wantOK: true},
			{do: "pick", id: 3, backend: a, wantOK: true},
			{do: "drop", backend: a, aborted: []uint64{1, 3}},
			{do: "drop", backend: a},
		}, 1},
		{"an unpicked connection is not dropped", 8, []op{
			{do: "add", id: 1, wantOK: true},
			{do: "pick", id: 1, backend: a, wantOK: true},
			{do: "unpick", id: 1},
			{do: "drop", backend: a},
		}, 1},
		{"full refuses", 2, []op{
			{do: "add", id: 1, wantOK: true},
			{do: "add", id: 2, wantOK: true},
			{do: "add", wantOK: false},
			{do: "remove", id: 1, wantOK: true},
			{do: "add", id: 3, wantOK: true},
		}, 2},
		{"a dropped connection cannot pick again", 8, []op{
			{do: "add", id: 1, wantOK: true},
			{do: "pick", id: 1, backend: a, wantOK: true},
			{do: "drop", backend: a, aborted: []uint64{1}},
			{do: "pick", id: 1, backend: b, wantOK: false},
			{do: "remove", id: 1, wantOK: false},
		}, 0},
		{"close aborts all and refuses more", 8, []op{
			{do: "add", id: 1, wantOK: true},
			{do: "add", id: 2, wantOK: true},
			{do: "pick", id: 2, backend: b, wantOK: true},
			{do: "close", aborted: []uint64{1, 2}},
			{do: "add", wantOK: false},
		}, 0},
		{"no backend", 8, []op{
			{do: "add", id: 1, wantOK: true},
			{do: "pick", id: 1, wantOK: false},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget := NewBudget(Limits{Units: tt.max})
			tb := newTable(budget)
			var aborted []uint64
			for i, o := range tt.ops {
				var ok bool
				var aborts []func()
				switch o.do {
				case "add":
					var id uint64
					id, ok = tb.add(func() { aborted = append(aborted, id) })
					if ok && id != o.id {
						t.Fatalf("op %d: add gave id %d, want %d", i, id, o.id)
					}
				case "pick":
					p := &testPicker{t: t, done: make(chan netip.AddrPort, 1)}
					if o.backend.IsValid() {
						p.backends = []netip.AddrPort{o.backend}
					}
					var got netip.AddrPort
					got, _, ok = tb.pick(o.id, p, netip.AddrPort{})
					if ok && got != o.backend {
						t.Fatalf("op %d: picked %s, want %s", i, got, o.backend)
					}
				case "unpick":
					tb.unpick(o.id)
					ok = o.wantOK
				case "remove":
					ok = tb.remove(o.id)
				case "drop":
					aborts = tb.drop(o.backend)
					ok = o.wantOK
				case "close":
					aborts = tb.close()
					ok = o.wantOK
				}
				if ok != o.wantOK {
					t.Fatalf("op %d (%s): ok %v, want %v", i, o.do, ok, o.wantOK)
				}
				aborted = aborted[:0]
				for _, f := range aborts {
					f()
				}
				if !sameSet(aborted, o.aborted) {
					t.Fatalf("op %d (%s): aborted %v, want %v", i, o.do, aborted, o.aborted)
				}
			}
			if n := tb.len(); n != tt.wantLen {
				t.Fatalf("len %d, want %d", n, tt.wantLen)
			}
			// Every connection out of the table gave its unit back.
			if units, _ := budget.Used(); units != tt.wantLen {
				t.Fatalf("budget: %d units used, want %d", units, tt.wantLen)
			}
		})
	}
}

func sameSet(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[uint64]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
