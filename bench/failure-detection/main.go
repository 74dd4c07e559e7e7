// Command failure-detection measures how long a SIGKILLed node takes to be
// reported NODEDOWN at every surviving node: Consul agent and clmsd of one
// node are killed together (a power loss) and the clock stops when the last
// survivor's libcluster subscriber receives the event. The tuned gossip
// profile OpenSSI ships and Consul's default timings run side by side in the
// same run, on real Consul clusters on loopback addresses.
//
//	go run ./bench/failure-detection -trials 20 -clmsd bin/clmsd -out bench/failure-detection/RESULTS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/openssi/openssi/bench/stats"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/nodetest"
)

func main() {
	trials := flag.Int("trials", 20, "kills per profile")
	clmsd := flag.String("clmsd", "bin/clmsd", "clmsd binary")
	out := flag.String("out", "", "write the results as Markdown to this file")
	profiles := flag.String("profiles", "tuned,default", "comma-separated profiles to run")
	flag.Parse()
	if err := run(*trials, *clmsd, *out, strings.Split(*profiles, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "failure-detection:", err)
		os.Exit(1)
	}
}

type result struct {
	profile   string
	latencies []time.Duration // to NODEDOWN at the last survivor
	byLeader  map[bool][]time.Duration
	leader    int             // trials whose victim was the Raft leader
	elections []time.Duration // kill of the leader to a new leader known
}

func run(trials int, clmsd, out string, profiles []string) error {
	bin, err := filepath.Abs(clmsd)
	if err != nil {
		return err
	}
	var results []result
	for _, p := range profiles {
		var prof consulagent.Profile
		switch p {
		case "tuned":
			prof = consulagent.Tuned
		case "default":
			prof = consulagent.Default
		default:
			return fmt.Errorf("unknown profile %q: want tuned or default", p)
		}
		r, err := measure(prof, trials, bin)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		results = append(results, r)
	}
	report := render(results, trials)
	fmt.Print(report)
	if out != "" {
		return os.WriteFile(out, []byte(report), 0o644)
	}
	return nil
}

func measure(prof consulagent.Profile, trials int, clmsd string) (result, error) {
	res := result{profile: prof.String()}
	electionTimes = nil
	dir, err := os.MkdirTemp("", "openssi-bench-fd-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "%s: starting 3 nodes\n", prof)
	c, err := nodetest.StartCluster(dir, nodetest.Options{Consul: consulagent.Options{Servers: 3, Profile: prof}, Clmsd: clmsd})
	if err != nil {
		return res, err
	}
	defer c.Stop()
	for i := 0; i < trials; i++ {
		// Alternate: a follower, then the Raft leader, so both kinds of
		// failure are measured equally often (left to chance, the restarted
		// node tends to win the next election and most kills hit the leader).
		victim, err := pickVictim(c, i%2 == 1, i)
		if err != nil {
			return res, err
		}
		d, wasLeader, err := trial(c, victim)
		if err != nil {
			return res, fmt.Errorf("trial %d: %w", i+1, err)
		}
		if wasLeader {
			res.leader++
		}
		res.latencies = append(res.latencies, d)
		if res.byLeader == nil {
			res.byLeader = map[bool][]time.Duration{}
		}
		res.byLeader[wasLeader] = append(res.byLeader[wasLeader], d)
		fmt.Fprintf(os.Stderr, "%s: trial %d/%d: %s killed, NODEDOWN at every survivor after %v (leader: %v)\n",
			prof, i+1, trials, victim.Agent.Name, d.Round(time.Millisecond), wasLeader)
	}
	res.elections = electionTimes
	return res, nil
}

// trial kills victim and returns the time until every survivor's subscriber
// got NODEDOWN for it; then it boots the victim again and waits until the
// cluster is whole.
// pickVictim returns the node whose agent is the Raft leader, or a
// follower (rotating).
func pickVictim(c *nodetest.Cluster, leader bool, i int) (*nodetest.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := c.Consul.WaitLeader(ctx)
	if err != nil {
		return nil, err
	}
	var followers []*nodetest.Node
	for _, n := range c.Nodes {
		if n.Agent == l {
			if leader {
				return n, nil
			}
			continue
		}
		followers = append(followers, n)
	}
	if leader || len(followers) == 0 {
		return nil, fmt.Errorf("no node runs the leader agent %s", l.Name)
	}
	return followers[i%len(followers)], nil
}

// electionTimes collects, for kills of the leader, the time until a new
// leader was known.
var electionTimes []time.Duration

func trial(c *nodetest.Cluster, victim *nodetest.Node) (time.Duration, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	leader, err := victim.Agent.Client().Status().Leader()
	if err != nil {
		return 0, false, err
	}
	wasLeader := strings.HasPrefix(leader, victim.Agent.IP+":")
	vc, err := victim.Client(ctx)
	if err != nil {
		return 0, false, err
	}
	me, err := vc.ThisNode(ctx)
	vc.Close()
	if err != nil {
		return 0, false, err
	}
	type got struct {
		at  time.Time
		err error
	}
	var survivors []*nodetest.Node
	for _, n := range c.Nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	ch := make(chan got, len(survivors))
	elected := make(chan time.Duration, 1)
	ready := make(chan struct{}, len(survivors))
	for _, s := range survivors {
		cl, err := s.Client(ctx)
		if err != nil {
			return 0, false, err
		}
		v, err := cl.Nodes(ctx)
		if err != nil {
			return 0, false, err
		}
		w := cl.Watch(ctx, v.Epoch)
		go func() {
			defer cl.Close()
			ready <- struct{}{}
			for w.Next() {
				e := w.Event()
				if e.Type == cluster.NodeDown && e.Node.Number == me.Number {
					ch <- got{at: time.Now()}
					return
				}
			}
			ch <- got{err: fmt.Errorf("watch ended: %v", w.Err())}
		}()
	}
	for range survivors {
		<-ready
	}
	start := time.Now()
	if err := victim.Kill(); err != nil {
		return 0, false, err
	}
	if wasLeader {
		// How much of the latency is Raft electing a new leader.
		go func() {
			for ctx.Err() == nil {
				l, err := survivors[0].Agent.Client().Status().Leader()
				if err == nil && l != "" && l != leader {
					elected <- time.Since(start)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	var last time.Time
	for range survivors {
		g := <-ch
		if g.err != nil {
			return 0, false, g.err
		}
		if g.at.After(last) {
			last = g.at
		}
	}
	d := last.Sub(start)
	if wasLeader {
		select {
		case e := <-elected:
			electionTimes = append(electionTimes, e)
		case <-time.After(30 * time.Second):
		}
	}
	if err := victim.Start(); err != nil {
		return 0, false, err
	}
	if err := c.WaitAllUp(ctx); err != nil {
		return 0, false, err
	}
	if _, err := c.Consul.WaitLeader(ctx); err != nil {
		return 0, false, err
	}
	return d, wasLeader, nil
}

func render(results []result, trials int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Failure detection: SIGKILL of a node to NODEDOWN at every survivor\n\n")
	fmt.Fprintf(&b, "3 nodes (3 Consul servers, one clmsd each) on loopback addresses, %d kills per profile, alternating a follower and the Raft leader as the victim. Measured %s on %s.\n\n",
		trials, time.Now().UTC().Format("2006-01-02"), hostDesc())
	fmt.Fprintf(&b, "| profile | victim | kills | p50 | p99 | min | max |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		for _, cat := range []struct {
			name string
			ds   []time.Duration
		}{{"follower", r.byLeader[false]}, {"Raft leader", r.byLeader[true]}, {"all", r.latencies}} {
			if len(cat.ds) == 0 {
				continue
			}
			s := append([]time.Duration(nil), cat.ds...)
			sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
			fmt.Fprintf(&b, "| %s | %s | %d | %v | %v | %v | %v |\n", r.profile, cat.name, len(s), ms(stats.Percentile(s, 50)), ms(stats.Percentile(s, 99)), ms(s[0]), ms(s[len(s)-1]))
		}
	}
	fmt.Fprintln(&b)
	p50 := map[string]time.Duration{}
	p99 := map[string]time.Duration{}
	for _, r := range results {
		s := append([]time.Duration(nil), r.latencies...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		p50[r.profile], p99[r.profile] = stats.Percentile(s, 50), stats.Percentile(s, 99)
	}
	if p50["tuned"] > 0 && p50["default"] > 0 {
		fmt.Fprintf(&b, "\nRatio default/tuned: p50 %.1fx, p99 %.1fx. Target with the tuned profile: p99 <= 2 s (Corosync's default token timeout is 1 s, RHEL ships 3 s).\n",
			float64(p50["default"])/float64(p50["tuned"]), float64(p99["default"])/float64(p99["tuned"]))
	}
	fmt.Fprintf(&b, "\nWith this few samples the p99 is the largest sample (nearest rank). A NODEDOWN must be committed to Consul's Raft log, so when the leader dies it waits for a new election: Consul's fastest setting (raft_multiplier = 1) gives a randomized 1-2 s heartbeat timeout before the election starts, which bounds the leader case.\n")
	for _, r := range results {
		fmt.Fprintf(&b, "\n%s samples (ms): %s\n", r.profile, samples(r.latencies))
		fmt.Fprintf(&b, "%s, kills of the leader, time until a new Raft leader was elected (ms): %s\n", r.profile, samples(r.elections))
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func samples(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprint(d.Milliseconds()))
	}
	return strings.Join(parts, " ")
}

func hostDesc() string {
	n, _ := os.ReadFile("/proc/cpuinfo")
	cores := strings.Count(string(n), "processor\t:")
	return fmt.Sprintf("a %d-core Linux machine", cores)
}
