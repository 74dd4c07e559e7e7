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
//	poll T members failed...   gossip poll at second T (Poll); want "changed" or "same"
//	readok T                   a successful read of Consul at second T
//	readfail                   a failed read of Consul
//	failed name=session...     Failed with these alive-key holders; want the names, sorted
func TestGossip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps [][2]string // step, want
	}{
		{"a failure reported while reads succeed is trusted", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b", "changed"},
			{"poll 3 5 b", "same"},
			{"failed a=s1 b=s2", "b"},
			{"failed a=s1 b=s2", "b"},
		}},
		{"a returned node's new session is not failed while gossip lags", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b", "changed"},
			{"failed a=s1 b=s2", "b"},
			{"failed a=s1 b=s3", ""},
			{"poll 4 5", "changed"},
			{"failed a=s1 b=s3", ""},
			{"poll 5 5 b", "changed"},
			{"failed a=s1 b=s3", "b"},
		}},
		{"a failure first used with its key gone is never applied", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b", "changed"},
			{"failed a=s1", ""},
			{"failed a=s1 b=s9", ""},
		}},
		{"cut off: what gossip said before the reads came back is not trusted", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 a b c", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed a=s1 b=s2 c=s3 d=s4", ""},
			{"poll 4 5 a b c d", "changed"},
			{"failed a=s1 b=s2 c=s3 d=s4", "d"},
		}},
		{"a failed read with a minority failed keeps the run of reads", [][2]string{
			{"readok 1", ""},
			{"poll 2 5 b", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed a=s1 b=s2", "b"},
		}},
		{"exactly half failed counts as cut off", [][2]string{
			{"readok 1", ""},
			{"poll 2 4 a b", "changed"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed a=s1 b=s2", ""},
		}},
		{"no members known: a failed read is not a cut", [][2]string{
			{"readok 1", ""},
			{"readfail", ""},
			{"readok 3", ""},
			{"poll 3 0 b", "changed"},
			{"failed b=s2", "b"},
		}},
		{"a trusted failure that becomes untrusted forgets its holder", [][2]string{
			{"readok 1", ""},
			{"poll 2 3 a b", "changed"},
			{"failed a=s1 b=s2", "a b"},
			{"readfail", ""},
			{"readok 3", ""},
			{"failed a=s1 b=s2", ""},
			{"poll 4 3", "changed"},
			{"poll 5 3 b", "changed"},
			{"failed a=s1 b=s5", "b"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g Gossip
			for i, st := range tc.steps {
				f := strings.Fields(st[0])
				got := ""
				switch f[0] {
				case "poll":
					var sec, members int
					fmt.Sscan(f[1], &sec)
					fmt.Sscan(f[2], &members)
					failed := map[string]bool{}
					for _, n := range f[3:] {
						failed[n] = true
					}
					got = "same"
					if g.Poll(failed, members, at(sec)) {
						got = "changed"
					}
				case "readok":
					var sec int
					fmt.Sscan(f[1], &sec)
					g.ReadOK(at(sec))
				case "readfail":
					g.ReadFailed()
				case "failed":
					holders := map[string]string{}
					for _, kv := range f[1:] {
						k, v, _ := strings.Cut(kv, "=")
						holders[k] = v
					}
					got = strings.Join(slices.Sorted(maps.Keys(g.Failed(holders))), " ")
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
