package node

import (
	"testing"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// TestDeadlockRound: a cycle across two masters is broken only once it
// has been seen in two rounds in a row, and then its youngest request is
// the victim.
func TestDeadlockRound(t *testing.T) {
	o1 := lockspace.Owner{Node: 1, Client: 1}
	o2 := lockspace.Owner{Node: 2, Client: 1}
	edge := func(holder, waiter lockspace.Owner, res string, id lockspace.LockID, seq uint64) *dlmpeerv1.Edge {
		return EdgeToProto("ls", lockspace.Edge{Holder: holder, Waiter: lockspace.Waiter{Resource: res, Seq: seq, Mode: lockspace.EX,
			Key: lockspace.Key{Owner: waiter, ID: id}}})
	}
	cycle := []*dlmpeerv1.Edge{edge(o1, o2, "a", 7, 3), edge(o2, o1, "b", 8, 5)}
	seen, victims := DeadlockRound(nil, cycle)
	if len(victims) != 0 {
		t.Fatalf("first round: victims %v, want none", victims)
	}
	_, victims = DeadlockRound(seen, cycle[:1])
	if len(victims) != 0 {
		t.Fatalf("half the cycle the next round: victims %v, want none", victims)
	}
	seen, _ = DeadlockRound(nil, cycle)
	_, victims = DeadlockRound(seen, cycle)
	if len(victims) != 1 || victims[0].GetWaiter().GetLockId() != 8 {
		t.Fatalf("second round: victims %v, want the youngest request (lock 8)", victims)
	}
}
