package lab

import (
	"reflect"
	"testing"
)

func TestParseRaftPeers(t *testing.T) {
	out := `Node   ID                                    Address           State     Voter  RaftProtocol  Commit Index  Trails Leader By
node1  0b1c  10.77.14.11:8300  follower  true   3             120           0 commits
node2  7a2d  10.77.14.12:8300  leader    true   3             120           -
node4  9f00  10.77.14.14:8300  follower  false  3             120           0 commits
`
	want := []RaftPeer{{"node1", "0b1c", "follower", true}, {"node2", "7a2d", "leader", true}, {"node4", "9f00", "follower", false}}
	got := ParseRaftPeers(out)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if l := LeaderOf(got); l != "node2" {
		t.Fatalf("leader %q, want node2", l)
	}
	if l := LeaderOf(ParseRaftPeers("Error getting peers: No cluster leader\n")); l != "" {
		t.Fatalf("leader of nothing %q", l)
	}
}
