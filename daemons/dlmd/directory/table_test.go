package directory

import "testing"

func TestTable(t *testing.T) {
	a := Key{"ls", "a"}
	b := Key{"ls", "b"}
	other := Key{"other", "a"}
	type step struct {
		op     string // lookup, remove, set
		k      Key
		node   NodeID
		want   NodeID // lookup: the master returned
		wantOK bool   // remove, set: the result
	}
	for _, tc := range []struct {
		name  string
		steps []step
		len   int
	}{
		{"first requester masters", []step{{"lookup", a, 2, 2, false}, {"lookup", a, 3, 2, false}, {"lookup", a, 1, 2, false}}, 1},
		{"names and lockspaces are separate", []step{{"lookup", a, 2, 2, false}, {"lookup", b, 3, 3, false}, {"lookup", other, 1, 1, false}}, 3},
		{"only the master removes", []step{{"lookup", a, 2, 2, false}, {"remove", a, 3, 0, false}, {"lookup", a, 3, 2, false}}, 1},
		{"after a remove the next requester masters", []step{{"lookup", a, 2, 2, false}, {"remove", a, 2, 0, true}, {"lookup", a, 3, 3, false}}, 1},
		{"remove of nothing", []step{{"remove", a, 2, 0, false}}, 0},
		{"set registers", []step{{"set", a, 3, 0, true}, {"set", a, 3, 0, true}, {"lookup", a, 1, 3, false}}, 1},
		{"set refuses a second master", []step{{"set", a, 3, 0, true}, {"set", a, 1, 0, false}, {"lookup", a, 2, 3, false}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable()
			for i, s := range tc.steps {
				switch s.op {
				case "lookup":
					if got := tb.Lookup(s.k, s.node); got != s.want {
						t.Fatalf("step %d: Lookup(%v, %d) = %d, want %d", i, s.k, s.node, got, s.want)
					}
				case "remove":
					if got := tb.Remove(s.k, s.node, 0); got != s.wantOK {
						t.Fatalf("step %d: Remove(%v, %d) = %v, want %v", i, s.k, s.node, got, s.wantOK)
					}
				case "set":
					if got := tb.Set(s.k, s.node); got != s.wantOK {
						t.Fatalf("step %d: Set(%v, %d) = %v, want %v", i, s.k, s.node, got, s.wantOK)
					}
				}
			}
			if tb.Len() != tc.len {
				t.Fatalf("Len = %d, want %d", tb.Len(), tc.len)
			}
			if m, ok := tb.Master(Key{"none", "x"}); ok || m != 0 {
				t.Fatalf("Master of an unknown key = %d, %v", m, ok)
			}
		})
	}
}

func TestTableTokenFloor(t *testing.T) {
	a, b := Key{"ls", "a"}, Key{"ls", "b"}
	tb := NewTable()
	tb.Lookup(a, 2)
	tb.Lookup(b, 3)
	for _, s := range []struct {
		k     Key
		from  NodeID
		token uint64
		ok    bool
		floor uint64
	}{
		{a, 3, 99, false, 0}, // not the master: ignored
		{a, 2, 7, true, 7},
		{a, 2, 50, false, 7}, // already gone
		{b, 3, 5, true, 7},   // the floor never goes down
	} {
		if ok := tb.Remove(s.k, s.from, s.token); ok != s.ok || tb.TokenFloor() != s.floor {
			t.Fatalf("Remove(%v, %d, %d) = %v, floor %d; want %v, %d", s.k, s.from, s.token, ok, tb.TokenFloor(), s.ok, s.floor)
		}
	}
}
