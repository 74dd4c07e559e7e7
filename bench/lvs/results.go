package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/openssi/openssi/bench/lvs/httpload"
	"github.com/openssi/openssi/bench/stats"
)

type results struct {
	params     params
	sides      []string
	throughput []throughputRow
	failover   []failoverResult
	// joins: a backend's start to its first connection through the VIP
	// (lvsd), sorted.
	joins        []time.Duration
	joinsFailure string // why the starts stopped early
	machine      string
	took         time.Duration
	notes        []string
}

// throughputRow adds up the rounds of one side.
type throughputRow struct {
	name      string // the side's name; "" for the straight run
	label     string
	requests  int64
	errors    int64
	elapsed   time.Duration
	rounds    []float64 // requests/s of each round
	latencies []time.Duration
}

func (r *throughputRow) add(x httpload.Result) {
	r.requests += x.Requests
	r.errors += x.Errors
	r.elapsed += x.Elapsed
	r.rounds = append(r.rounds, x.RPS())
	r.latencies = append(r.latencies, x.Latencies...)
}

func (r throughputRow) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

type killResult struct {
	victim    string
	leader    bool // the victim was Consul's Raft leader
	ok        bool
	took      time.Duration
	newHolder string
	// neighOK: the host's neighbour entry for the VIP names the new
	// holder's MAC; arpAnswers: the nodes that answered an ARP request
	// for the VIP then (-1: not asked).
	neighOK    bool
	arpAnswers int
}

type failoverResult struct {
	name    string
	label   string
	kills   []killResult
	failure string // why the kills stopped early
}

// summary is the percentiles of the successful kills and the count of
// the others.
func (f failoverResult) summary() (p50, p99, worst time.Duration, ok, failed int) {
	var ds []time.Duration
	for _, k := range f.kills {
		if k.ok {
			ds = append(ds, k.took)
			worst = max(worst, k.took)
		} else {
			failed++
		}
	}
	return stats.Percentile(ds, 50), stats.Percentile(ds, 99), worst, len(ds), failed
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func render(r results) string {
	var b strings.Builder
	p := r.params
	fmt.Fprintf(&b, "# lvsd: the VIP's proxy and failover against HAProxy and keepalived\n\n")
	fmt.Fprintf(&b, "Measured %s in the lab (`lab up -n %d`: systemd-nspawn Debian bookworm nodes on one bridge, each with Consul and openssi from the local repository) on the project's build machine: %s. "+
		"The lab lock held, so no other lab ran (other helpers' builds and tests may have). One run of `go run ./bench/lvs -sides %s` (%s). "+
		"The client is the host, on the lab bridge.\n\n",
		time.Now().UTC().Format("2006-01-02"), nodes, r.machine, strings.Join(r.sides, ","), r.took.Round(time.Second))
	if len(r.throughput) > 0 {
		fmt.Fprintf(&b, "## Requests/s and latency through the VIP: %d keep-alive connections, %d round(s) of %s each (after %s of warm-up), interleaved\n\n", p.conns, p.rounds, p.duration, p.warmup)
		b.WriteString("A GET of a 9-byte body (`ok nodeN`) from a Go net/http backend on each of the 3 nodes. Latency is one request's, sent to its answer, on a connection already open.\n\n")
		b.WriteString("| path | requests/s | each round | p50 | p99 | errors |\n|---|---|---|---|---|---|\n")
		for _, row := range r.throughput {
			var rounds []string
			for _, x := range row.rounds {
				rounds = append(rounds, fmt.Sprintf("%.0f", x))
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %d |\n", row.label, row.rps(), strings.Join(rounds, ", "),
				ms(stats.Percentile(row.latencies, 50)), ms(stats.Percentile(row.latencies, 99)), row.errors)
		}
		b.WriteString("\n")
	}
	for _, f := range r.failover {
		p50, p99, worst, ok, failed := f.summary()
		fmt.Fprintf(&b, "## Failover: %s\n\n", f.label)
		fmt.Fprintf(&b, "SIGKILL of the node holding the VIP to the first successful new connection (a GET answered) from the host: **p50 %s, p99 %s**, worst %s, over %d kills; %d did not answer within %s.\n\n",
			secs(p50), secs(p99), secs(worst), ok, failed, p.timeout)
		b.WriteString("| kill | victim | victim was Raft leader | answering again after | then held by | host's neighbour entry names it | nodes answering ARP for the VIP |\n|---|---|---|---|---|---|---|\n")
		for i, k := range f.kills {
			took := "**no answer**"
			if k.ok {
				took = secs(k.took)
			}
			fmt.Fprintf(&b, "| %d | %s | %v | %s | %s | %v | %d |\n", i+1, k.victim, k.leader, took, k.newHolder, k.neighOK, k.arpAnswers)
		}
		if f.failure != "" {
			fmt.Fprintf(&b, "\nThe kills stopped early: %s\n", f.failure)
		}
		b.WriteString("\n")
	}
	if len(r.joins) > 0 {
		b.WriteString("## lvsd: listen() on a registered port to the first connection routed to it\n\n")
		fmt.Fprintf(&b, "With lvsd directing from node1 and every backend stopped (an empty pool), the start of one node's backend (`systemctl start`, issued from the host; the backend listens on the registered port at once) to the first new connection through the VIP that it answers, probing every 10 ms: **p50 %s, p99 %s**, worst %s, over %d starts (node1, node2, node3 in turn).\n\n",
			ms(stats.Percentile(r.joins, 50)), ms(stats.Percentile(r.joins, 99)), ms(r.joins[len(r.joins)-1]), len(r.joins))
	}
	if r.joinsFailure != "" {
		fmt.Fprintf(&b, "The starts of lvsd's listen() to first routed connection stopped early: %s\n\n", r.joinsFailure)
	}
	b.WriteString(targets(r))
	b.WriteString("## Method\n\n")
	fmt.Fprintf(&b, "- The VIP is %s.100/24 on each node's link (host0). Every node runs the same backend (bench/lvs/lvsbackend, Go net/http) on its own address at port %d, the port a proxy forwards, and on all addresses at port %d, where a node holding the VIP answers directly.\n", subnet, servicePort, anyPort)
	fmt.Fprintf(&b, "- Throughput: the proxy side runs on node1, which also holds the VIP; every node's backend is in its pool. The load generator (bench/lvs/httpload) runs on the host: %d connections, each sending the next GET when the previous answer is read; a failed request is counted and its connection redialled. Percentiles are nearest-rank over every request of every round.\n", p.conns)
	fmt.Fprintf(&b, "- Failover: the side runs on every node (and starts at every boot). Before each kill the bench waits until all %d nodes run, exactly one holds the VIP, and the VIP answers, without a break and on the same node for %s; ", nodes, p.settle)
	if p.avoidLeader {
		b.WriteString("it moves Consul's Raft leadership off the holder; ")
	}
	b.WriteString("it then kills the holder's whole container (lab.Kill, a power loss) and tries a new connection and GET every 10 ms (250 ms timeout each) until one succeeds. Then it reads the host's neighbour entry for the VIP and asks the bridge who has the VIP with one ARP request (lab.WhoHas: more than one answer would be two holders). The node is started again and the next kill waits for it to rejoin.\n")
	for _, n := range r.notes {
		b.WriteString("\n" + n)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// targets holds lvsd to issue 14's targets against the peers of the same
// run, when both were measured.
func targets(r results) string {
	var b strings.Builder
	b.WriteString("## Targets (issue 14)\n\n")
	rows := map[string]throughputRow{}
	for _, row := range r.throughput {
		rows[row.name] = row
	}
	fails := map[string]failoverResult{}
	for _, f := range r.failover {
		fails[f.name] = f
	}
	lvsd, ok1 := rows["lvsd"]
	haproxy, ok2 := rows["haproxy"]
	if ok1 && ok2 && haproxy.rps() > 0 {
		ratio := lvsd.rps() / haproxy.rps()
		fmt.Fprintf(&b, "- lvsd's proxy >= 90%% of HAProxy's requests/s: %s (%.0f%%)\n", verdict(ratio >= 0.9), 100*ratio)
	} else {
		b.WriteString("- lvsd's proxy >= 90% of HAProxy's requests/s: not measured in this run\n")
	}
	lf, ok1 := fails["lvsd"]
	kf, ok2 := fails["keepalived"]
	if ok1 {
		var ds []time.Duration
		for _, k := range lf.kills {
			if k.ok && !k.leader {
				ds = append(ds, k.took)
			}
		}
		p99 := stats.Percentile(ds, 99)
		fmt.Fprintf(&b, "- lvsd's failover p99 <= 3 s when the director is not Consul's Raft leader: %s (%s over %d such kills)\n", verdict(len(ds) > 0 && p99 <= 3*time.Second), secs(p99), len(ds))
	} else {
		b.WriteString("- lvsd's failover p99 <= 3 s: not measured in this run\n")
	}
	if ok1 && ok2 {
		l50, l99, _, _, _ := lf.summary()
		k50, k99, _, _, _ := kf.summary()
		fmt.Fprintf(&b, "- lvsd's failover faster than keepalived's: %s (p50 %s against %s, p99 %s against %s)\n", verdict(l50 < k50 && l99 < k99), secs(l50), secs(k50), secs(l99), secs(k99))
	} else {
		b.WriteString("- lvsd's failover faster than keepalived's (published: VRRP about 3.6 s): not measured in this run\n")
	}
	if len(r.joins) > 0 {
		p99 := stats.Percentile(r.joins, 99)
		fmt.Fprintf(&b, "- listen() on a registered port to the first connection routed to it <= 1 s: %s (p99 %s over %d)\n", verdict(p99 <= time.Second), ms(p99), len(r.joins))
	} else {
		b.WriteString("- listen() on a registered port to the first connection routed to it <= 1 s: not measured in this run\n")
	}
	b.WriteString("\n")
	return b.String()
}
