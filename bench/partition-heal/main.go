// Command partition-heal measures what a healed partition does to the rest
// of the membership in the lab, for several values of Consul's
// gossip_lan.suspicion_mult side by side in one run.
//
// A node cut off from the others goes on declaring every other node dead
// in its own gossip, one by one, for seconds after the cut. A verdict it
// reaches just after the partition heals goes out as a dead message that
// every node believes at once, the Raft leader included: Consul fails a
// healthy node for a moment (its session is invalidated), and a clmsd
// reading then would commit a NODEDOWN (then a NODEUP) of a node that never
// stopped; clmsd's grace (membership.Grace) exists for this. This benchmark
// counts flaps, and the failures clmsd absorbed, over many
// partition-and-heal cycles, and measures in the same run what each setting
// costs in failure detection (SIGKILL of a whole node to NODEDOWN at every
// survivor).
//
//	go run ./bench/partition-heal -dist dist -out bench/partition-heal/RESULTS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/openssi/openssi/bench/hostinfo"
	"github.com/openssi/openssi/bench/stats"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

func main() {
	dist := flag.String("dist", "dist", "dist/ with repo/ from `make repo`")
	mults := flag.String("mults", "2,3", "comma-separated gossip_lan.suspicion_mult values to compare")
	nodes := flag.Int("nodes", 5, "lab nodes")
	cycles := flag.Int("cycles", 10, "partition-and-heal cycles per setting and round")
	kills := flag.Int("kills", 3, "SIGKILLs of a follower per setting and round, for the failure-detection cost")
	rounds := flag.Int("rounds", 2, "rounds: each brings up a fresh lab per setting, settings interleaved")
	out := flag.String("out", "", "write the results as Markdown here")
	logLevel := flag.String("consul-log-level", "warn", "the nodes' Consul log_level (info shows memberlist's verdicts)")
	logs := flag.String("logs", "", "on a flap, write every node's Consul and clmsd journal around the heal into this directory")
	flag.Parse()
	consulLogLevel, logDir = *logLevel, *logs
	var ms []int
	for _, f := range strings.Split(*mults, ",") {
		m, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || m < 1 {
			fmt.Fprintf(os.Stderr, "bench/partition-heal: -mults: %q is not a positive integer\n", f)
			os.Exit(2)
		}
		ms = append(ms, m)
	}
	if *nodes < 3 || *cycles < 0 || *kills < 0 || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench/partition-heal: need -nodes >= 3, -cycles >= 0, -kills >= 0, -rounds >= 1")
		os.Exit(2)
	}
	if err := run(*dist, ms, *nodes, *cycles, *kills, *rounds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/partition-heal:", err)
		os.Exit(1)
	}
}

// Set from the flags.
var consulLogLevel, logDir string

// cycle is one partition and heal.
type cycle struct {
	mult     int
	victim   string
	leader   bool          // the victim led Raft when it was cut off
	detect   time.Duration // cut-off to NODEDOWN at every other node
	rejoin   time.Duration // heal to NODEUP at every other node
	flapped  []string      // other nodes whose membership changed after the heal
	events   []string      // when some did: what each other node delivered after the heal
	absorbed []string      // other nodes whose session Consul ended after the heal, without a membership change
	settleUp bool          // every node UP again at the end of the watch
	healedAt time.Time
}

// kill is one SIGKILL of a follower.
type kill struct {
	mult   int
	detect time.Duration
}

func run(dist string, mults []int, nodes, cycles, kills, rounds int, out string) error {
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ = filepath.Abs(dist)
	started := time.Now()
	load0 := hostinfo.LoadAvg()
	var cs []cycle
	var ks []kill
	for r := 1; r <= rounds; r++ {
		for _, m := range mults {
			c, k, err := block(dist, consul, m, nodes, cycles, kills, r)
			cs = append(cs, c...)
			ks = append(ks, k...)
			if err != nil {
				return fmt.Errorf("suspicion_mult %d, round %d: %w", m, r, err)
			}
		}
	}
	report := render(mults, nodes, rounds, cs, ks, started, load0, hostinfo.LoadAvg())
	fmt.Print(report)
	if out != "" {
		return os.WriteFile(out, []byte(report), 0o644)
	}
	return nil
}

// block brings up a fresh lab with suspicion_mult m and runs its cycles and
// kills.
func block(dist, consul string, m, nodes, cycles, kills, round int) ([]cycle, []kill, error) {
	dir, err := os.MkdirTemp("", "openssi-bench-heal-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	tuning := consulagent.TunedSettings()
	tuning.SuspicionMult = m
	l, err := lab.Open(lab.Options{Dir: dir, Prefix: "heal", Subnet: "10.77.11", Dist: dist, Consul: consul, Log: os.Stderr, Gossip: &tuning, ConsulLogLevel: consulLogLevel})
	if err != nil {
		return nil, nil, err
	}
	ctx := context.Background()
	defer l.Down(ctx)
	if err := l.Up(ctx, nodes); err != nil {
		return nil, nil, err
	}
	if err := l.WaitAllUp(ctx, 2*time.Minute); err != nil {
		return nil, nil, err
	}
	time.Sleep(5 * time.Second) // let the start-up settle
	var cs []cycle
	names := []string{}
	for _, n := range l.State().Nodes {
		names = append(names, n.Name)
	}
	for i := 0; i < cycles; i++ {
		// Cut off each node in turn, starting from the last (a client).
		victim := names[len(names)-1-i%len(names)]
		c, err := partitionAndHeal(ctx, l, victim)
		c.mult = m
		if len(c.flapped) > 0 && logDir != "" {
			saveJournals(ctx, l, filepath.Join(logDir, fmt.Sprintf("mult%d-round%d-cycle%d", m, round, i+1)), c.healedAt)
		}
		if err != nil {
			return cs, nil, err
		}
		fmt.Fprintf(os.Stderr, "mult %d round %d cycle %d: cut off %s (leader %v): NODEDOWN everywhere after %s, NODEUP %s after the heal, flapped %v, failed by Consul but kept UP %v\n",
			m, round, i+1, victim, c.leader, c.detect.Round(time.Millisecond), c.rejoin.Round(time.Millisecond), c.flapped, c.absorbed)
		for _, e := range c.events {
			fmt.Fprintf(os.Stderr, "  %s\n", e)
		}
		cs = append(cs, c)
	}
	var ks []kill
	for i := 0; i < kills; i++ {
		victim, err := follower(ctx, l)
		if err != nil {
			return cs, ks, err
		}
		d, err := l.KillAndMeasure(ctx, victim, time.Minute)
		if err != nil {
			return cs, ks, err
		}
		fmt.Fprintf(os.Stderr, "mult %d round %d kill %d: %s: NODEDOWN everywhere after %s\n", m, round, i+1, victim, d.Round(time.Millisecond))
		ks = append(ks, kill{mult: m, detect: d})
		// A node's boot can time out on a loaded machine; try once more.
		if err := l.Start(ctx, victim); err != nil {
			fmt.Fprintf(os.Stderr, "restart of %s: %v; once more\n", victim, err)
			if err := l.Start(ctx, victim); err != nil {
				return cs, ks, err
			}
		}
		if err := l.WaitAllUp(ctx, 2*time.Minute); err != nil {
			return cs, ks, err
		}
	}
	return cs, ks, nil
}

// partitionAndHeal cuts victim off, waits until every other node saw it go
// and it saw it lost the cluster, heals, and watches the others' events for
// 10 s after the last NODEUP: any change of another node's membership in
// that time is a flap.
func partitionAndHeal(ctx context.Context, l *lab.Lab, victim string) (cycle, error) {
	c := cycle{victim: victim}
	var others []string
	for _, n := range l.State().Nodes {
		if n.Name != victim {
			others = append(others, n.Name)
		}
	}
	v, err := l.View(ctx, others[0])
	if err != nil {
		return c, err
	}
	num := 0
	for _, n := range v.Nodes {
		if n.Name == victim {
			num = n.Number
		}
	}
	if leader, err := raftLeader(ctx, l, others[0]); err == nil {
		c.leader = leader == victim
	}
	var fs []*lab.Follower
	defer func() {
		for _, f := range fs {
			f.Stop()
		}
	}()
	for _, n := range others {
		f, err := l.Follow(n, v.Epoch)
		if err != nil {
			return c, err
		}
		fs = append(fs, f)
	}
	time.Sleep(500 * time.Millisecond) // the followers are connected
	cut := time.Now()
	if err := l.Partition(victim); err != nil {
		return c, err
	}
	healed := false
	defer func() {
		if !healed {
			_ = l.Heal(victim)
		}
	}()
	for _, f := range fs {
		at, err := f.Wait(cluster.NodeDown, num, 30*time.Second)
		if err != nil {
			return c, err
		}
		c.detect = max(c.detect, at.Sub(cut))
	}
	if err := l.WaitFor(ctx, victim, 30*time.Second, "lost quorum", func(v cluster.View) bool { return !v.Quorum }); err != nil {
		return c, err
	}
	if err := l.Heal(victim); err != nil {
		return c, err
	}
	healedAt := time.Now()
	c.healedAt = healedAt
	healed = true
	var back time.Time
	for _, f := range fs {
		at, err := f.Wait(cluster.NodeUp, num, time.Minute)
		if err != nil {
			return c, err
		}
		if at.After(back) {
			back = at
		}
	}
	c.rejoin = back.Sub(healedAt)
	time.Sleep(time.Until(back.Add(10 * time.Second)))
	seen := map[string]bool{}
	for _, f := range fs {
		for _, a := range f.Events() {
			if a.At.After(healedAt) && a.Event.Node.Number != num && !seen[a.Event.Node.Name] {
				seen[a.Event.Node.Name] = true
				c.flapped = append(c.flapped, a.Event.Node.Name)
			}
		}
	}
	if len(c.flapped) > 0 {
		for _, f := range fs {
			var evs []string
			for _, a := range f.Events() {
				if a.At.After(healedAt) {
					evs = append(evs, fmt.Sprintf("+%dms %s %s@%d", a.At.Sub(healedAt).Milliseconds(), a.Event.Type, a.Event.Node.Name, a.Event.Epoch))
				}
			}
			c.events = append(c.events, f.Node+": "+strings.Join(evs, ", "))
		}
	}
	// A healthy node whose session Consul ended after the heal (its
	// clmsd says so when it takes its key again): a flap clmsd's grace
	// absorbed, unless it shows in the events too.
	for _, n := range others {
		out, err := l.Exec(ctx, n, "journalctl", "--no-pager", "-q", "-o", "cat", "-u", "openssi-clmsd",
			"--since", fmt.Sprintf("@%d", healedAt.Add(-time.Second).Unix()), "-g", "membership session is gone|declared down with its current session")
		if err == nil && strings.TrimSpace(out) != "" && !seen[n] {
			c.absorbed = append(c.absorbed, n)
		}
	}
	// Whatever happened, start the next cycle from a whole membership.
	c.settleUp = l.WaitAllUp(ctx, time.Minute) == nil
	if !c.settleUp {
		return c, fmt.Errorf("the membership did not come back whole after the heal of %s", victim)
	}
	return c, nil
}

// saveJournals writes each node's Consul and clmsd journal from 5 s before
// to 5 s after the heal into dir/<node>.log.
func saveJournals(ctx context.Context, l *lab.Lab, dir string, healedAt time.Time) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "journals:", err)
		return
	}
	since := fmt.Sprintf("@%d", healedAt.Add(-5*time.Second).Unix())
	until := fmt.Sprintf("@%d", healedAt.Add(5*time.Second).Unix())
	for _, n := range l.State().Nodes {
		out, err := l.Exec(ctx, n.Name, "journalctl", "--no-pager", "-o", "short-precise", "-u", "consul", "-u", "openssi-clmsd", "--since", since, "--until", until)
		if err != nil {
			out += "\n(journalctl: " + err.Error() + ")"
		}
		_ = os.WriteFile(filepath.Join(dir, n.Name+".log"), []byte(fmt.Sprintf("healed at %s\n%s", healedAt.Format("15:04:05.000000"), out)), 0o644)
	}
	fmt.Fprintf(os.Stderr, "  journals in %s\n", dir)
}

func raftLeader(ctx context.Context, l *lab.Lab, node string) (string, error) {
	out, err := l.Exec(ctx, node, "consul", "operator", "raft", "list-peers")
	if err != nil {
		return "", fmt.Errorf("raft peers: %v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[3] == "leader" {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("no Raft leader in\n%s", out)
}

// follower picks a Consul server that does not lead Raft.
func follower(ctx context.Context, l *lab.Lab) (string, error) {
	names := l.State().Nodes
	leader, err := raftLeader(ctx, l, names[0].Name)
	if err != nil {
		return "", err
	}
	for _, n := range names {
		if n.Server && n.Name != leader {
			return n.Name, nil
		}
	}
	return "", fmt.Errorf("no follower server besides the leader %s", leader)
}

func render(mults []int, nodes, rounds int, cs []cycle, ks []kill, started time.Time, load0, load1 string) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Partition and heal: flaps of healthy nodes against suspicion_mult\n\n")
	fmt.Fprintf(&b, "Measured %s in the lab (`lab up -n %d`, systemd-nspawn Debian bookworm nodes on one bridge, the first three Consul servers) on %s: %d CPUs, %s; host load average %s at the start and %s at the end; %s. One run of `go run ./bench/partition-heal` (%s), %d round(s), each bringing up a fresh lab per setting, settings interleaved. Every other gossip setting is OpenSSI's tuned profile (`consulagent.TunedSettings`).\n\n",
		started.Format("2006-01-02"), nodes, host, runtime.NumCPU(), runtime.Version(), load0, load1, "the lab lock held", time.Since(started).Round(time.Second), rounds)
	b.WriteString("A cycle cuts one node off (its veth down), waits until every other node delivered NODEDOWN and the cut-off node reports lost quorum, heals, and watches every other node's `ssi events` for 10 s after the last NODEUP. A flap is any event about a node other than the cut-off one in that time. Its cause: the cut-off node goes on declaring the others dead one by one for seconds after the cut, and a verdict it reaches just after the heal is believed by every node, so Consul fails a healthy node for a moment (its session invalidated). clmsd holds back such a NODEDOWN while another node is DOWN (`membership.Grace`, 1 s); the column \"kept UP\" counts the cycles where Consul failed a healthy node (its clmsd logged that its session was gone) and no membership event followed. The cut-off node rotates over every node, the Raft leader included.\n\n")
	b.WriteString("| suspicion_mult | cycles | cycles with a flap | cycles where Consul failed a healthy node and clmsd kept it UP | cut-off to NODEDOWN everywhere p50 / max | heal to NODEUP everywhere p50 / max | SIGKILL of a follower server to NODEDOWN everywhere, p50 / max (kills) |\n|---|---|---|---|---|---|---|\n")
	for _, m := range mults {
		var n, flaps, absorbed int
		var det, rej, kd []time.Duration
		for _, c := range cs {
			if c.mult != m {
				continue
			}
			n++
			if len(c.flapped) > 0 {
				flaps++
			}
			if len(c.absorbed) > 0 {
				absorbed++
			}
			det = append(det, c.detect)
			rej = append(rej, c.rejoin)
		}
		for _, k := range ks {
			if k.mult == m {
				kd = append(kd, k.detect)
			}
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %d | %s / %s | %s / %s | %s / %s (%d) |\n", m, n, flaps, absorbed,
			ms(stats.Percentile(det, 50)), ms(stats.Percentile(det, 100)), ms(stats.Percentile(rej, 50)), ms(stats.Percentile(rej, 100)), ms(stats.Percentile(kd, 50)), ms(stats.Percentile(kd, 100)), len(kd))
	}
	b.WriteString("\nEvery cycle:\n\n| suspicion_mult | cut off | it led Raft | NODEDOWN everywhere | NODEUP everywhere after the heal | flapped | failed by Consul, kept UP |\n|---|---|---|---|---|---|---|\n")
	for _, c := range cs {
		fl := "-"
		if len(c.flapped) > 0 {
			fl = strings.Join(c.flapped, ", ")
		}
		ab := "-"
		if len(c.absorbed) > 0 {
			ab = strings.Join(c.absorbed, ", ")
		}
		fmt.Fprintf(&b, "| %d | %s | %v | %s | %s | %s | %s |\n", c.mult, c.victim, c.leader, ms(c.detect), ms(c.rejoin), fl, ab)
	}
	return b.String()
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Milliseconds())
}
