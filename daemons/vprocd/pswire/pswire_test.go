package pswire

import (
	"reflect"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

func TestRoundTrip(t *testing.T) {
	start := time.Unix(1700000000, 123)
	for _, r := range []proctable.Row{
		{},
		{CPID: cpid.MustMake(2, 7), Node: 2, PID: 7, PPID: cpid.MustMake(2, 1), UID: 1000, GID: 100, Stat: "Ss+", CPU: 12.5,
			RSS: 4096, Start: start, CPUTime: 3 * time.Second, Nice: -5, Comm: "a\xffb", Args: []string{"sh", "", "\xfe"}, Migrate: "no: it holds a socket"},
		{CPID: cpid.MustMake(2, 2), Node: 2, PID: 2, Stat: "S", Comm: "kthreadd", Kernel: true},
		{CPID: cpid.MustMake(2, 9), Node: 2, PID: 9, Args: []string{}},
	} {
		got := Row(Proc(r))
		if got.Args == nil && r.Args != nil && len(r.Args) == 0 {
			got.Args = []string{} // proto does not tell an empty list from none
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %+v = %+v", r, got)
		}
	}
}

func TestSnapshotDropsOtherNodes(t *testing.T) {
	s := proctable.Snapshot{Node: 2, Uptime: time.Hour, Boot: time.Unix(100, 0), Rows: []proctable.Row{
		{CPID: cpid.MustMake(2, 5), Node: 2, PID: 5},
		{CPID: cpid.MustMake(3, 5), Node: 3, PID: 5},
	}}
	got := Snapshot(Table(s, nil))
	if got.Node != 2 || got.Uptime != time.Hour || !got.Boot.Equal(s.Boot) || len(got.Rows) != 1 || got.Rows[0].CPID != cpid.MustMake(2, 5) {
		t.Fatalf("Snapshot = %+v", got)
	}
}

func TestFilter(t *testing.T) {
	f := proctable.Filter{Nodes: []uint32{1, 2}, UIDs: []uint32{0}, CPIDs: []cpid.CPID{cpid.MustMake(1, 1)}}
	r := Request(f, 1500*time.Microsecond)
	if r.TimeoutMs != 1 {
		t.Errorf("timeout = %d ms, want 1", r.TimeoutMs)
	}
	if got := Filter(r); !reflect.DeepEqual(got, f) {
		t.Errorf("Filter(Request(f)) = %+v, want %+v", got, f)
	}
	if r := Request(proctable.Filter{}, 0); r.TimeoutMs != 0 || len(r.Nodes) != 0 {
		t.Errorf("empty request = %v", r)
	}
}
