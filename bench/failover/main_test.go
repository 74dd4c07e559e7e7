package main

import (
	"github.com/openssi/openssi/lab"
	"reflect"
	"testing"
)

func TestCrmOnline(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      []string
	}{
		{"pacemaker 2.1", `Cluster Summary:
  * Stack: corosync
  * Current DC: node2 (version 2.1.5-a3f44794f94) - partition with quorum
  * 3 nodes configured
  * 1 resource instance configured

Node List:
  * Online: [ node3 node1 node2 ]

Full List of Resources:
  * bench-pcmk	(systemd:bench-pcmk):	 Started node1
`, []string{"node1", "node2", "node3"}},
		{"a node offline", `Node List:
  * Online: [ node1 node2 ]
  * OFFLINE: [ node3 ]
`, []string{"node1", "node2"}},
		{"the old format", "Online: [ node1 ]\n", []string{"node1"}},
		{"none yet", "Cluster Summary:\n  * Stack: corosync\n", nil},
	} {
		if got := crmOnline(c.out); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: crmOnline = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCrmDC(t *testing.T) {
	for _, c := range []struct{ out, want string }{
		{"Cluster Summary:\n  * Stack: corosync\n  * Current DC: node2 (version 2.1.5-a3f44794f94) - partition with quorum\n", "node2"},
		{"Current DC: node1 (1) - partition with quorum\n", "node1"},
		{"  * Current DC: NONE\n", ""},
		{"", ""},
	} {
		if got := crmDC(c.out); got != c.want {
			t.Errorf("crmDC(%q) = %q, want %q", c.out, got, c.want)
		}
	}
}

func TestRaftPeers(t *testing.T) {
	out := `Node   ID                                    Address           State     Voter  RaftProtocol  Commit Index  Trails Leader By
node1  5b0d1c9e-0000-4000-8000-000000000001  10.77.13.11:8300  follower  true   3             120           0 commits
node2  5b0d1c9e-0000-4000-8000-000000000002  10.77.13.12:8300  leader    true   3             120           -
node3  5b0d1c9e-0000-4000-8000-000000000003  10.77.13.13:8300  follower  false  3             118           2 commits
`
	want := []lab.RaftPeer{
		{Node: "node1", ID: "5b0d1c9e-0000-4000-8000-000000000001", State: "follower", Voter: true},
		{Node: "node2", ID: "5b0d1c9e-0000-4000-8000-000000000002", State: "leader", Voter: true},
		{Node: "node3", ID: "5b0d1c9e-0000-4000-8000-000000000003", State: "follower", Voter: false},
	}
	got := lab.ParseRaftPeers(out)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("raftPeers = %+v, want %+v", got, want)
	}
	if l := lab.LeaderOf(got); l != "node2" {
		t.Errorf("leaderOf = %q, want node2", l)
	}
	if l := lab.LeaderOf(lab.ParseRaftPeers("Error getting peers: No cluster leader\n")); l != "" {
		t.Errorf("leaderOf without a leader = %q", l)
	}
}
