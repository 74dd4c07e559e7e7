//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/lab"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func view(t *testing.T, l *lab.Lab, node string) cluster.View {
	t.Helper()
	v, err := l.View(ctxFor(t, 30*time.Second), node)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// numbers maps node name to node number, checking they are distinct.
func numbers(t *testing.T, v cluster.View) map[string]int {
	t.Helper()
	out := map[string]int{}
	seen := map[int]bool{}
	for _, n := range v.Nodes {
		if seen[n.Number] {
			t.Fatalf("node number %d given twice: %s", n.Number, v.Summary())
		}
		seen[n.Number] = true
		out[n.Name] = n.Number
	}
	return out
}

// checkAllUp waits until every node sees want nodes UP with distinct
// numbers and quorum, at each node, not only at one.
func checkAllUp(t *testing.T, l *lab.Lab, want int) {
	t.Helper()
	for _, n := range l.State().Nodes {
		err := l.WaitFor(ctxFor(t, 2*time.Minute), n.Name, time.Minute, fmt.Sprintf("%d nodes UP with distinct numbers and quorum", want), func(v cluster.View) bool {
			up := 0
			seen := map[int]bool{}
			for _, m := range v.Nodes {
				if m.State == cluster.Up {
					up++
				}
				seen[m.Number] = true
			}
			return up == want && len(seen) == len(v.Nodes) && v.Quorum
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func follow(t *testing.T, l *lab.Lab, node string, from uint64) *lab.Follower {
	t.Helper()
	f, err := l.Follow(node, from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

func TestThreeNodesComeUp(t *testing.T) {
	three, err := openLab(t.TempDir(), "e2e3", "10.77.3")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = three.Down(context.Background()) })
	attachLogs(t, three)
	start := time.Now()
	if err := three.Up(ctxFor(t, 5*time.Minute), 3); err != nil {
		t.Fatal(err)
	}
	t.Logf("3 nodes UP in %s", time.Since(start).Round(100*time.Millisecond))
	checkAllUp(t, three, 3)
}

func TestFiveNodesComeUp(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	checkAllUp(t, five, 5)
}

// TestKillAndStart power-cuts nodes and checks every survivor reports
// NODEDOWN within 3s (p99 over the trials, which kill Consul clients and
// follower servers), and that a restarted node comes back UP with the same
// number. Killing the Raft leader is measured and reported but only held
// to 20s (nothing may hang): the NODEDOWN must be committed through Raft,
// Consul cannot elect a new leader faster than its 1-2s randomized
// heartbeat timeout (raft_multiplier = 1 is its floor; see README), and on
// a loaded 2-core machine split votes have stretched an election to 10s.
func TestKillAndStart(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	checkAllUp(t, five, 5)
	nums := numbers(t, view(t, five, "node1"))
	leader := func() string {
		out, err := five.Exec(ctxFor(t, 10*time.Second), "node1", "consul", "operator", "raft", "list-peers")
		if err != nil {
			t.Fatalf("raft peers: %v\n%s", err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[3] == "leader" {
				return f[0]
			}
		}
		t.Fatalf("no leader in\n%s", out)
		return ""
	}
	var latencies []time.Duration
	for _, victim := range []string{"node4", "node5", "follower-server", "node4", "follower-server", "leader"} {
		isLeader := victim == "leader"
		switch victim {
		case "leader":
			victim = leader()
		case "follower-server":
			l := leader()
			for _, s := range []string{"node1", "node2", "node3"} {
				if s != l {
					victim = s
					break
				}
			}
		}
		num := nums[victim]
		from := view(t, five, "node1").Epoch
		if victim == "node1" {
			from = view(t, five, "node2").Epoch
		}
		worst, err := five.KillAndMeasure(ctxFor(t, time.Minute), victim, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		survivors := 4
		if isLeader {
			t.Logf("killed the Raft leader %s (node %d): NODEDOWN at all %d survivors after %s", victim, num, survivors, worst.Round(time.Millisecond))
			if worst > 20*time.Second {
				t.Errorf("NODEDOWN after killing the Raft leader took %s (> 20s)", worst)
			}
		} else {
			latencies = append(latencies, worst)
			t.Logf("killed %s (node %d): NODEDOWN at all %d survivors after %s", victim, num, survivors, worst.Round(time.Millisecond))
		}
		var fs []*lab.Follower
		for _, n := range five.State().Nodes {
			if n.Name != victim {
				fs = append(fs, follow(t, five, n.Name, from))
			}
		}
		if err := five.Start(ctxFor(t, 2*time.Minute), victim); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if _, err := f.Wait(cluster.NodeUp, num, time.Minute); err != nil {
				t.Fatal(err)
			}
			f.Stop()
		}
		checkAllUp(t, five, 5)
		if got := numbers(t, view(t, five, victim))[victim]; got != num {
			t.Fatalf("%s came back as node %d, was %d", victim, got, num)
		}
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p99 := latencies[len(latencies)-1] // nearest rank with this few trials
	t.Logf("NODEDOWN latency over %d kills: p50 %s, p99 %s", len(latencies), latencies[len(latencies)/2].Round(time.Millisecond), p99.Round(time.Millisecond))
	if p99 > 3*time.Second {
		t.Fatalf("p99 NODEDOWN latency %s exceeds 3s: %v", p99, latencies)
	}
}

// TestPartition cuts one node of five off: the four see NODEDOWN, the
// cut-off node says it lost the cluster, and after healing it rejoins.
func TestPartition(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	checkAllUp(t, five, 5)
	victim := "node5"
	num := numbers(t, view(t, five, "node1"))[victim]
	from := view(t, five, "node1").Epoch
	var others []*lab.Follower
	for _, n := range []string{"node1", "node2", "node3", "node4"} {
		others = append(others, follow(t, five, n, from))
	}
	time.Sleep(500 * time.Millisecond)
	if err := five.Partition(victim); err != nil {
		t.Fatal(err)
	}
	healed := false
	t.Cleanup(func() {
		if !healed {
			_ = five.Heal(victim)
		}
	})
	for _, f := range others {
		if _, err := f.Wait(cluster.NodeDown, num, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := five.WaitFor(ctxFor(t, time.Minute), victim, 30*time.Second, "the cut-off node to report lost quorum", func(v cluster.View) bool {
		return !v.Quorum
	}); err != nil {
		t.Fatal(err)
	}
	out, _ := five.Exec(ctxFor(t, 10*time.Second), victim, "ssi", "nodes")
	if !strings.Contains(out, "lost the cluster") {
		t.Fatalf("ssi nodes on the cut-off node does not say it lost the cluster:\n%s", out)
	}
	if err := five.Heal(victim); err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	healed = true
	var back time.Time
	for _, f := range others {
		at, err := f.Wait(cluster.NodeUp, num, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if at.After(back) {
			back = at
		}
	}
	if err := five.WaitFor(ctxFor(t, time.Minute), victim, 30*time.Second, "quorum back", func(v cluster.View) bool { return v.Quorum }); err != nil {
		t.Fatal(err)
	}
	checkAllUp(t, five, 5)
	// A node cut off goes on declaring the others dead in its own gossip
	// for seconds after the cut; a verdict it reaches just after the heal
	// is believed by every node, and Consul fails a healthy node for a
	// moment. clmsd holds back the NODEDOWN of a node whose key is lost
	// while another is DOWN (membership.Grace), so no other node's
	// membership may change. The flap, when it happens, comes 50-250 ms
	// after the heal, before the healed node is back; watch a few seconds
	// past that.
	time.Sleep(time.Until(back.Add(3 * time.Second)))
	for _, f := range others {
		for _, a := range f.Events() {
			if a.Event.Node.Number != num && a.At.After(healedAt) {
				t.Fatalf("the heal of %s changed the membership of node %d (%s): %s", victim, a.Event.Node.Number, a.Event.Node.Name, f.Summary())
			}
		}
	}
}

// TestDaemonRestartedBySystemd SIGKILLs clmsd inside a node: systemd
// restarts it and the node never leaves the membership.
func TestDaemonRestartedBySystemd(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	checkAllUp(t, five, 5)
	node := "node2"
	num := numbers(t, view(t, five, "node1"))[node]
	f := follow(t, five, "node1", view(t, five, "node1").Epoch)
	pid := func() string {
		out, err := five.Exec(ctxFor(t, 10*time.Second), node, "systemctl", "show", "-p", "MainPID", "--value", "openssi-clmsd")
		if err != nil {
			t.Fatalf("MainPID: %v %s", err, out)
		}
		return strings.TrimSpace(out)
	}
	before := pid()
	if out, err := five.Exec(ctxFor(t, 10*time.Second), node, "systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "openssi-clmsd"); err != nil {
		t.Fatalf("kill: %v %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p := pid(); p != "0" && p != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("systemd did not restart openssi-clmsd within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := five.WaitUnitsActive(ctxFor(t, time.Minute), node, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a wrong NODEDOWN/NODELEAVE would be out by now
	for _, a := range f.Events() {
		if a.Event.Node.Number == num {
			t.Fatalf("a restart of clmsd changed the membership of node %d: %s", num, f.Summary())
		}
	}
	checkAllUp(t, five, 5)
}

// fewestUp is the fewest nodes UP after any of evs, counting from total
// UP before the first: a NODEUP adds one, a NODEDOWN or NODELEAVE takes
// one away.
func fewestUp(evs []lab.Arrival, total int) int {
	up, fewest := total, total
	for _, a := range evs {
		if a.Event.Type == cluster.NodeUp {
			up++
		} else {
			up--
		}
		fewest = min(fewest, up)
	}
	return fewest
}
