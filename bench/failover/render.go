package main

import (
	"fmt"
	"github.com/openssi/openssi/bench/hostinfo"
	"runtime"
	"strings"
	"time"

	"github.com/openssi/openssi/bench/failover/recovery"
)

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ratio(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", r)
}

var classes = []recovery.Class{recovery.NotLeader, recovery.Leader, recovery.All}

func render(b *bench, kills, crashes []recovery.Kill, log []killLog, machine string, took time.Duration) string {
	var w strings.Builder
	ours, _ := ours(b.vs)
	var crashed []string
	for _, v := range ours {
		if v.crash != "" {
			crashed = append(crashed, v.name)
		}
	}
	fmt.Fprintf(&w, "# Failover of a singleton service: OpenSSI against Consul's lock and Pacemaker\n\n")
	fmt.Fprintf(&w, "Measured %s in the lab (`lab up -n %d`: systemd-nspawn Debian bookworm nodes on one bridge, each a Consul server with openssi from the local repository) "+
		"on the project's build machine: %d cores (%s), %s, Go %s; the lab lock held, so no other lab ran (other helpers' builds and tests may have). One run of `go run ./bench/failover` (%s), %d kills of a whole node and %d crashes of a service's process (%s).\n\n",
		time.Now().UTC().Format("2006-01-02"), len(b.names), runtime.NumCPU(), hostinfo.CPUModel(), machine, runtime.Version(), took.Round(time.Second), len(log), len(crashes), strings.Join(crashed, ", "))

	if b.failure != "" {
		fmt.Fprintf(&w, "**The run stopped early**: %s. The figures below are what was measured before.\n\n", b.failure)
	}
	b.writeKills(&w, kills)
	fmt.Fprintf(&w, "\n## The service's own crash: SIGKILL of its process to its answering again on the same node\n\n")
	w.WriteString("| variant | crashes | p50 | p99 | max | no answer within the timeout |\n|---|---|---|---|---|---|\n")
	var targets []string
	for _, v := range ours {
		if v.crash == "" {
			continue
		}
		c := recovery.Summarize(crashes, v.name, recovery.All)
		fmt.Fprintf(&w, "| %s: %s | %d | %s | %s | %s | %d |\n", v.label, v.restart, c.N, ms(c.P50), ms(c.P99), ms(c.Max), c.Lost)
		targets = append(targets, fmt.Sprintf("%s %s (%s)", v.name, verdict(recovery.Within(c, time.Second)), ms(c.P99)))
	}
	fmt.Fprintf(&w, "\nTarget (the issue's, for a monitored app; applied to the init singleton too): p99 <= 1 s: %s.\n", strings.Join(targets, ", "))

	w.WriteString("\n## Every kill\n\n| # | victim | Consul's Raft leader | Pacemaker's DC | recovery |\n|---|---|---|---|---|\n")
	for i, k := range log {
		var parts []string
		for _, x := range k.kills {
			s := fmt.Sprintf("%s %s", x.Variant, ms(x.D))
			if x.Lost {
				s = fmt.Sprintf("%s none within %s", x.Variant, ms(x.D))
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(&w, "| %d | %s | %s | %s | %s |\n", i+1, k.victim, yes(k.leader), yes(k.dc == k.victim), strings.Join(parts, ", "))
	}
	if len(b.rejoins) > 0 {
		fmt.Fprintf(&w, "\nPacemaker did not see a restarted node again within 90 s by itself %d times (%s): the bench then restarted corosync and pacemaker on that node once (after the measurement, so no figure above includes it).\n", len(b.rejoins), strings.Join(b.rejoins, ", "))
	}
	w.WriteString("\n## Set-up\n\n")
	for _, n := range b.notes {
		fmt.Fprintf(&w, "- %s\n", n)
	}
	var ports []string
	for _, v := range b.vs {
		ports = append(ports, v.name+" "+v.port)
	}
	fmt.Fprintf(&w, method, strings.Join(ports, ", "), len(b.vs), len(b.names), b.p.quota.NotLeader, b.p.quota.Leader, b.p.gap)
	return w.String()
}

func (b *bench) writeKills(w *strings.Builder, kills []recovery.Kill) {
	ours, peers := ours(b.vs)
	fmt.Fprintf(w, "## SIGKILL of the node running the service to the service answering from another node\n\n")
	w.WriteString("| variant | the dead node was | kills | p50 | p99 | max | no answer within the timeout |\n|---|---|---|---|---|---|---|\n")
	fig := map[string]map[recovery.Class]recovery.Figures{}
	for _, v := range b.vs {
		fig[v.name] = map[recovery.Class]recovery.Figures{}
		for _, c := range classes {
			f := recovery.Summarize(kills, v.name, c)
			fig[v.name][c] = f
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %d |\n", v.label, c, f.N, ms(f.P50), ms(f.P99), ms(f.Max), f.Lost)
		}
	}
	fmt.Fprintf(w, "\nWith fewer than 100 kills the p99 is the largest sample (nearest rank).\n\n")
	fmt.Fprintf(w, "Ratios, peer / OpenSSI (how many times longer the peer's service was gone):\n\n")
	w.WriteString("| peer | OpenSSI | the dead node was | p50 ratio | p99 ratio |\n|---|---|---|---|---|\n")
	for _, o := range ours {
		for _, v := range peers {
			for _, c := range classes {
				p, of := fig[v.name][c], fig[o.name][c]
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", v.label, o.name, c, ratio(recovery.Ratio(p.P50, of.P50)), ratio(recovery.Ratio(p.P99, of.P99)))
			}
		}
	}
	w.WriteString("\nTargets of the issue:\n\n")
	for _, o := range ours {
		nl := fig[o.name][recovery.NotLeader]
		fmt.Fprintf(w, "- %s: p99 <= 3 s when the dead node was not Consul's Raft leader: %s (%s over %d kills)\n", o.name, verdict(recovery.Within(nl, 3*time.Second)), ms(nl.P99), nl.N)
		for _, c := range classes {
			var pf []recovery.Figures
			for _, v := range peers {
				pf = append(pf, fig[v.name][c])
			}
			fmt.Fprintf(w, "- %s: faster than every peer (p50 and p99 both lower) %s: %s\n", o.name, map[recovery.Class]string{
				recovery.NotLeader: "when the dead node was not Consul's Raft leader", recovery.Leader: "when it was the Raft leader", recovery.All: "over every kill"}[c], verdict(recovery.Faster(fig[o.name][c], pf)))
		}
	}
	w.WriteString("- for scale, published: keepalived VRRP about 3.6 s, Vault on a Consul lock 13–15 s, Nomad at least its 10 s heartbeat grace, Kubernetes 50 s + 300 s (node monitor grace, then the pod eviction timeout)\n")
}

const method = `
## Method

- Every variant runs the same static HTTP service (test/e2e/singleton ` + "`serve`" + `), which answers every request with its node's name, on a port of its own (%s); all %d run at once on the same %d nodes, each elected on its own, so a node may run several.
- Before each kill the bench waits until every node is UP, Consul has a leader and its 3 voters, Pacemaker sees every node online, and each variant answers on exactly one node, the same in two polls a second apart. It picks the variant whose quota misses the most kills (%d of a node that is not Consul's Raft leader and %d of the leader, each variant), moves Consul's Raft leadership onto or away from that variant's node as the quota asks (` + "`consul operator raft transfer-leader`" + `), and kills that node; every variant that ran there is measured by that kill, in the class of what the node was (the leader read just before the kill). Then the node is booted again and rejoins. Two kills are at least %s apart: Consul ends a lock delay with a timer started at each release, and the timer of an earlier release of the same key deletes a later delay when it fires (` + "`state.Delay.SetExpiration`" + `), so kills less than 15 s apart would cut the consul lock variant's delay short and flatter it (a first run without the spacing saw it recover in 5.4 s and 10.4 s). Even so some of its recoveries come 10.4 s after the kill, 5 s before the delay should end; likely the same timer again: a server the bench restarted replays the earlier release from its Raft log with a fresh timer, and when that server leads, the timer deletes the later delay. Those recoveries flatter the peer; they are kept as measured.
- The time is taken on the host from just before the SIGKILL of the node's systemd-nspawn (lab.Kill: the whole PID namespace dies at once, a power cut) to the start of the first poll that another node answered with its own name. The witness, on the host, polls every survivor's port of each variant that ran on the victim every 20 ms (HTTP GET, no keep-alive, 200 ms timeout), so a figure may be up to 20 ms late. A variant that does not answer within a minute counts as "no answer" and not in the percentiles.
- The crash, for each OpenSSI variant: inside the node running it, ` + "`kill -KILL`" + ` of the unit's main process (bench-init.service; the application's transient unit ` + keepaliveUnit + `), timed from just after the kill (the node's clock is the host's; a poll started before it could be answered by the dying process), to the first answer on the same node polled every 20 ms; crashes are 3 s apart, since systemd refuses a sixth start of a unit within 10 s by default.
- Percentiles are nearest-rank. The bench's arithmetic (first answer after a kill, percentiles, figures, ratios, the choice of the next kill) is the pure package bench/failover/recovery, unit-tested.
`
