package membership

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestGossip drives a Gossip through scripted steps; each step is one of
//
//	poll T members leader failed...   gossip poll at second T (Poll), the Raft
//	                                  leader as the agent names it ("-": unknown);
//	                                  want "changed" or "same"
//	readok T                          a successful read of Consul at second T
//	readfail                          a failed read of Consul
//	failed leader name=session...     Failed with the Raft leader now ("-":
//	                                  unknown) and these alive-key holders;
//	                                  want the names, sorted
func TestGossip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps [][2]string // step, want
	}{
		{"a dead leader's failure is trusted once another node leads", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"poll 3 5 - b", "same"},
			{"readfail", ""}, // the election
			{"readok 4", ""},
			{"failed c a=s1 b=s2", "b"},
			{"failed c a=s1 b=s2", "b"},
		}},
		{"the leader unknown when the failure was reported counts as the failed node's", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 - b", "changed"},
			{"failed c a=s1 b=s2", "b"},
		}},
		{"the leader unknown now: a failure of the node that led is trusted", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"failed - a=s1 b=s2", "b"},
		}},
		{"the leader asked in vain at the poll: the last one known decides", [][2]string{
			{"readok 1", ""},
			{"failed b a=s1 b=s2", ""},
			{"poll 2 5 - b", "changed"},
			{"failed c a=s1 b=s2", "b"},
			{"poll 3 5 - b c", "changed"}, // last known is now c
			{"failed a a=s1 b=s2 c=s3", "b c"},
			{"poll 4 5 - b c d", "changed"}, // ... and now a
			{"failed a a=s1 b=s2 c=s3 d=s4", "b c"},
		}},
		// After a heal: the accuser's gossip keeps a healthy node failed
		// for up to 30s while the living leader knows better.
		{"a stale failure of a healthy node that does not lead is never trusted", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 a b", "changed"},
			{"failed a a=s1 b=s2", ""},
			{"readok 3", ""},
			{"failed a a=s1 b=s2", ""},
			{"readfail", ""},
			{"readok 30", ""},
			{"failed c a=s1 b=s2", ""}, // an election later does not make it true
			{"poll 31 5 a", "changed"},
			{"failed a a=s1 b=s2", ""},
		}},
		{"a stale failure of the leader is not trusted while it goes on leading", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"failed b a=s1 b=s2", ""},
			{"readok 3", ""},
			{"failed b a=s1 b=s2", ""},
			{"poll 4 5 b", "changed"}, // gossip catches up
			{"failed b a=s1 b=s2", ""},
		}},
		{"a node that stopped leading before its failure was reported is left to the leader", [][2]string{
			{"readok 1", ""},
			{"failed b a=s1 b=s2", ""},
			{"poll 2 5 c b", "changed"},
			{"failed c a=s1 b=s2", ""},
		}},
		{"a failure reported again is judged on the leader of its new report", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"poll 3 5 b", "changed"},
			{"poll 4 5 c b", "changed"},
			{"failed d a=s1 b=s2", ""},
		}},
		{"a returned node's new session is not failed while gossip lags", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"failed c a=s1 b=s2", "b"},
			{"failed c a=s1 b=s3", ""},
			{"poll 4 5 c", "changed"},
			{"failed c a=s1 b=s3", ""},
			{"poll 5 5 - b", "changed"},
			{"failed c a=s1 b=s3", ""}, // c led when b failed again
			{"poll 6 5 c", "changed"},
			{"poll 7 5 - b", "changed"},
			{"failed - a=s1 b=s3", ""}, // unknown falls back to c
		}},
		{"a failure first used with its key gone is never applied", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"failed c a=s1", ""},
			{"failed c a=s1 b=s9", ""},
		}},
		{"cut off: what gossip said before the reads came back is not trusted", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 - a b c", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed e a=s1 b=s2 c=s3 d=s4", ""},
			{"poll 4 5 - a b c d", "changed"},
			{"failed e a=s1 b=s2 c=s3 d=s4", ""}, // e led since 3
		}},
		{"cut off: a failure reported after the reads came back is trusted", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 - a b c", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"poll 4 5 d a b c d", "changed"},
			{"failed e a=s1 b=s2 c=s3 d=s4", "d"},
		}},
		{"a failed read with a minority failed keeps the run of reads", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b b", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed c a=s1 b=s2", "b"},
		}},
		{"exactly half failed counts as cut off", [][2]string{
			{"readok 1", ""},
			{"poll 2 4 - a b", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed c a=s1 b=s2", ""},
		}},
		{"no members known: a failed read is not a cut", [][2]string{
			{"readok 1", ""},
			{"readfail", ""},
			{"readok 3", ""},
			{"poll 3 0 b b", "changed"},
			{"failed c b=s2", "b"},
		}},
		{"a trusted failure that becomes untrusted forgets its holder", [][2]string{
			{"readok 1", ""},
			{"poll 2 3 - a b", "changed"},
			{"failed c a=s1 b=s2", "a b"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed c a=s1 b=s2", ""},
			{"poll 4 3 c", "changed"},
			{"poll 5 3 b b", "changed"},
			{"failed c a=s1 b=s5", "b"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Gossip
			leader := func(s string) string {
				if s == "-" {
					return ""
				}
				return s
			}
			for i, st := range tc.steps {
				f := strings.Fields(st[0])
				got := ""
				switch f[0] {
				case "poll":
					var sec, members int
					fmt.Sscan(f[1], &sec)
					fmt.Sscan(f[2], &members)
					failed := map[string]bool{}
					for _, n := range f[4:] {
						failed[n] = true
					}
					unreported := g.Unreported(failed)
					got = "same"
					if g.Poll(failed, members, leader(f[3]), at(sec)) {
						got = "changed"
					}
					if unreported && got != "changed" {
						t.Fatalf("step %d %q: unreported failures but no change", i, st[0])
					}
				case "readok":
					var sec int
					fmt.Sscan(f[1], &sec)
					g.ReadOK(at(sec))
				case "readfail":
					g.ReadFailed()
				case "failed":
					holders := map[string]string{}
					for _, kv := range f[2:] {
						k, v, _ := strings.Cut(kv, "=")
						holders[k] = v
					}
					got = strings.Join(slices.Sorted(maps.Keys(g.Failed(holders, leader(f[1])))), " ")
				default:
					t.Fatalf("step %d: unknown %q", i, st[0])
				}
				if got != st[1] {
					t.Fatalf("step %d %q: got %q, want %q", i, st[0], got, st[1])
				}
			}
		})
	}
}

func TestNextRejoin(t *testing.T) {
	v := View{Epoch: 3, Members: []Member{
		{Number: 1, Name: "a", State: Up},
		{Number: 2, Name: "b", State: Down, DownSession: "s2"},
		{Number: 3, Name: "c", State: Down},
		{Number: 4, Name: "d", State: Leaving},
	}}
	for _, tc := range []struct {
		name            string
		number          int
		session, holder string
		leaving         bool
		want            Rejoin
	}{
		{"up and holding", 1, "s1", "s1", false, Stay},
		{"key gone", 1, "s1", "", false, Reopen},
		{"key held by another session", 1, "s1", "sX", false, Reopen},
		{"declared down with this session, still holding", 2, "s2", "s2", false, Renew},
		{"declared down with this session, key gone", 2, "s2", "", false, Renew},
		{"declared down with an older session, holding a new one", 2, "s7", "s7", false, Stay},
		{"down with no session recorded, key gone", 3, "s3", "", false, Reopen},
		{"not in the view yet, holding", 5, "s5", "s5", false, Stay},
		{"leaving: stays out", 1, "s1", "", true, Stay},
		{"leaving, declared down: stays out", 2, "s2", "s2", true, Stay},
	} {
		if got := NextRejoin(v, tc.number, tc.session, tc.holder, tc.leaving); got != tc.want {
			t.Errorf("%s: NextRejoin = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestGossipDecidesNodeDown plays the shell's loop over the core: gossip
// polls, reads of Consul (the alive keys and their sessions, and the Raft
// leader) each reconciled with the failures Gossip trusts. Each step is
//
//	poll T leader failed...    gossip poll at second T; nodes by number
//	read T leader held...      a read at second T; held: number=session;
//	                           want the events committed, as summary() prints them
//	readfail                   a failed read (a Raft election)
//
// where leader is a node number, or "-" when unknown.
func TestGossipDecidesNodeDown(t *testing.T) {
	const up = "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4, NODEUP 5@5"
	for _, tc := range []struct {
		name  string
		steps [][2]string
	}{
		{"after a heal, the accuser's stale gossip fails no healthy node", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"poll 2 1 2 3", ""},
			{"read 2 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""},
			{"read 4 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""},
			{"read 30 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""},
			{"poll 31 1", ""},
			{"read 31 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""},
		}},
		{"a stale accusation of the leader fails no one while it leads", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"poll 2 1 1", ""},
			{"read 2 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""},
			{"read 20 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""},
		}},
		{"a dead follower: its session invalidated is a NODEDOWN at once", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"read 2 1 1=s1 2=s2 3=s3 5=s5", "NODEDOWN 4@6"},
			{"poll 2 1 4", ""},
			{"read 3 1 1=s1 2=s2 3=s3 5=s5", ""},
		}},
		{"a dead follower: its session invalidated before gossip is polled", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"poll 2 1 4", ""},
			{"read 2 1 1=s1 2=s2 3=s3 4=s4 5=s5", ""}, // the leader has not written yet
			{"read 2 1 1=s1 2=s2 3=s3 5=s5", "NODEDOWN 4@6"},
		}},
		{"a dead leader: NODEDOWN at the first read after the election", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"poll 2 1 1", ""},
			{"readfail", ""},
			{"poll 3 - 1", ""},
			{"readfail", ""},
			{"read 4 2 1=s1 2=s2 3=s3 4=s4 5=s5", "NODEDOWN 1@6"}, // s1 not invalidated yet
			{"read 5 2 2=s2 3=s3 4=s4 5=s5", ""},
		}},
		{"a dead leader reported while no leader was known", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"readfail", ""},
			{"poll 2 - 1", ""},
			{"read 4 3 1=s1 2=s2 3=s3 4=s4 5=s5", "NODEDOWN 1@6"},
		}},
		{"a dead leader back with a new session is UP again", [][2]string{
			{"read 1 1 1=s1 2=s2 3=s3 4=s4 5=s5", up},
			{"poll 2 1 1", ""},
			{"read 4 2 1=s1 2=s2 3=s3 4=s4 5=s5", "NODEDOWN 1@6"},
			{"read 5 2 1=s6 2=s2 3=s3 4=s4 5=s5", "NODEUP 1@7"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Gossip
			var v View
			name := func(s string) string {
				if s == "-" {
					return ""
				}
				return "node" + s
			}
			for i, st := range tc.steps {
				f := strings.Fields(st[0])
				got := ""
				switch f[0] {
				case "poll":
					var sec int
					fmt.Sscan(f[1], &sec)
					failed := map[string]bool{}
					for _, n := range f[3:] {
						failed[name(n)] = true
					}
					leader := ""
					if g.Unreported(failed) {
						leader = name(f[2])
					}
					g.Poll(failed, 5, leader, at(sec))
				case "readfail":
					g.ReadFailed()
				case "read":
					var sec int
					fmt.Sscan(f[1], &sec)
					g.ReadOK(at(sec))
					o := Observed{Alive: map[int]Presence{}, Holders: map[int]string{}, Now: at(sec)}
					holders := map[string]string{}
					for _, kv := range f[3:] {
						k, sess, _ := strings.Cut(kv, "=")
						var n int
						fmt.Sscan(k, &n)
						o.Alive[n] = Presence{Name: name(k), Session: sess}
						o.Holders[n] = sess
						holders[name(k)] = sess
					}
					o.Alive = WithoutFailed(o.Alive, g.Failed(holders, name(f[2])))
					var events []Event
					v, events = Reconcile(v, o, 64)
					got = summary(events)
				default:
					t.Fatalf("step %d: unknown %q", i, st[0])
				}
				if got != st[1] {
					t.Fatalf("step %d %q: got %q, want %q", i, st[0], got, st[1])
				}
			}
		})
	}
}
