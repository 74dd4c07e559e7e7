package history

import (
	"strings"
	"testing"
)

func TestEncodeDecode(t *testing.T) {
	id := ID{Node: 3, Client: 65535, Seq: 1<<40 + 7}
	c, got := Decode(Encode(123456789, id))
	if c != 123456789 || got != id {
		t.Fatalf("got %d %v", c, got)
	}
	if c, got := Decode(Encode(0, ID{})); c != 0 || got != (ID{}) {
		t.Fatalf("zero: %d %v", c, got)
	}
}

// cs is a critical section of node n, client 1, sequence seq on res held
// from t0 to t1 that read count written by by.
func cs(n uint16, seq uint64, res string, t0, t1 int64, valid bool, read uint64, by ID, wrote uint64) Record {
	return Record{Kind: KindCS, ID: ID{Node: n, Client: 1, Seq: seq}, Res: res, T0: t0, T1: t1,
		Valid: valid, Read: read, ReadBy: by, Wrote: wrote}
}

func id(n uint16, seq uint64) ID { return ID{Node: n, Client: 1, Seq: seq} }

func TestCheck(t *testing.T) {
	good := []Record{
		cs(1, 1, "a", 10, 20, true, 0, ID{}, 1),
		cs(2, 1, "a", 30, 40, true, 1, id(1, 1), 2),
		cs(1, 2, "b", 15, 35, true, 0, ID{}, 1), // another resource may overlap
		cs(3, 1, "a", 50, 60, true, 2, id(2, 1), 3),
	}
	for _, tc := range []struct {
		name     string
		recs     []Record
		killedAt int64
		want     string // a substring of the first violation; "" for none
	}{
		{"good, in any order", []Record{good[3], good[1], good[2], good[0]}, 1000, ""},
		{"overlap", append(good[:3:3], cs(3, 1, "a", 38, 60, true, 2, id(2, 1), 3)), 1000, "mutual exclusion violated"},
		{"overlap with an earlier long section", []Record{
			cs(1, 1, "a", 10, 100, true, 0, ID{}, 1),
			cs(2, 1, "a", 30, 40, true, 1, id(1, 1), 2),
			cs(3, 1, "a", 50, 60, true, 2, id(2, 1), 3),
		}, 1000, "mutual exclusion violated"},
		{"lost increment", []Record{
			good[0], good[1],
			cs(3, 1, "a", 50, 60, true, 1, id(1, 1), 2),
		}, 1000, "the log says the previous holder 2/1/1 wrote 2"},
		{"same value read twice", []Record{
			good[0],
			cs(2, 1, "a", 30, 40, true, 1, id(1, 1), 2),
			cs(3, 1, "a", 50, 60, true, 1, id(1, 1), 2),
		}, 1000, "the log says"},
		{"not one more", []Record{good[0], cs(2, 1, "a", 30, 40, true, 1, id(1, 1), 5)}, 1000, "not one more"},
		{"invalid before the kill", []Record{good[0], cs(2, 1, "a", 30, 40, false, 0, ID{}, 7)}, 35, "not valid before"},
		{"invalid after the kill, rebuilt from the log", []Record{
			good[0], good[1],
			cs(3, 1, "a", 50, 60, false, 0, ID{}, 2),
			cs(1, 2, "a", 70, 80, true, 2, id(3, 1), 3),
		}, 45, ""},
		{"a dead holder's unlogged section", []Record{
			good[0],
			// node 2 held it (unlogged) and died: invalid next.
			cs(3, 1, "a", 50, 60, false, 9, id(2, 1), 2),
		}, 45, ""},
		{"invalid twice after the kill", []Record{
			good[0], good[1],
			cs(3, 1, "a", 50, 60, false, 0, ID{}, 2),
			cs(1, 2, "a", 70, 80, true, 2, id(3, 1), 3),
			cs(2, 2, "a", 90, 95, false, 0, ID{}, 4),
		}, 45, "not valid again"},
		{"logged twice", []Record{good[0], good[0]}, 1000, "logged twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, _ := Check(tc.recs, tc.killedAt)
			switch {
			case tc.want == "" && len(bad) > 0:
				t.Fatalf("violations: %q", bad)
			case tc.want != "" && len(bad) == 0:
				t.Fatalf("no violation, want %q", tc.want)
			case tc.want != "" && !strings.Contains(bad[0], tc.want):
				t.Fatalf("first violation %q, want %q", bad[0], tc.want)
			}
		})
	}
	_, st := Check(good, 1000)
	if st["a"] != (Stats{Sections: 3, Last: 3}) || st["b"] != (Stats{Sections: 1, Last: 1}) {
		t.Fatalf("stats %+v", st)
	}
}
