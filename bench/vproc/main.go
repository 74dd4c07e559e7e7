// Command vproc measures OpenSSI's remote exec (vprocd) in the lab
// against OpenSSH side by side in the same run: from node 1 to node 2,
// `ssi exec -n 2 -- true` as a whole process, a client/vproc Exec call, a
// fresh `ssh node2 true` and one through a ControlMaster already open;
// `ssi version` alone; execs per second with 64 concurrent callers;
// stdio throughput through a remote `cat`; and `ssi ps` over all nodes in
// a lab of 3 nodes and one of 8.
//
// sshd is installed in the lab image but disabled; the bench starts it on
// the target with a key pair made for root in this run. Every timing is
// taken inside node 1 by vprocprobe, which this command builds and copies
// there.
//
//	go run ./bench/vproc -dist dist -out bench/vproc/RESULTS.md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/openssi/openssi/bench/hostinfo"
	"github.com/openssi/openssi/bench/stats"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/openssi/openssi/bench/labssh"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

type params struct {
	dist      string
	runs      int
	psRuns    int
	callers   int
	duration  time.Duration
	streamMiB int
	small     int
	big       int
	out       string
}

func main() {
	var p params
	flag.StringVar(&p.dist, "dist", "dist", "dist/ with repo/ from `make repo`")
	flag.IntVar(&p.runs, "runs", 200, "runs of each exec latency variant")
	flag.IntVar(&p.psRuns, "ps-runs", 50, "runs of ssi ps in each lab")
	flag.IntVar(&p.callers, "callers", 64, "concurrent callers of the throughput runs")
	flag.DurationVar(&p.duration, "duration", 10*time.Second, "length of each throughput run")
	flag.IntVar(&p.streamMiB, "stream-mib", 256, "MiB through cat in each stdio run")
	flag.IntVar(&p.small, "nodes", 3, "nodes of the lab of every measurement")
	flag.IntVar(&p.big, "big", 8, "nodes of the second lab, for ssi ps only (0: skip it)")
	flag.StringVar(&p.out, "out", "", "write the results as Markdown here")
	flag.Parse()
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench/vproc:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// result is vprocprobe's output (see bench/vproc/vprocprobe).
type result struct {
	Samples   map[string][]int64 `json:"samples"`
	Rates     map[string]float64 `json:"rates"`
	Failed    map[string]int64   `json:"failed"`
	Streams   map[string]float64 `json:"streams"`
	Checksums map[string]bool    `json:"checksums"`
	StreamCPU map[string]struct {
		Client float64 `json:"client"`
		Origin float64 `json:"origin"`
		Target float64 `json:"target"`
	} `json:"stream_cpu"`
}

func run(p params) error {
	if p.small < 2 {
		return fmt.Errorf("-nodes %d: want at least 2", p.small)
	}
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ := filepath.Abs(p.dist)
	dir, err := os.MkdirTemp("", "openssi-bench-vproc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	probe := filepath.Join(dir, "vprocprobe")
	build := exec.Command("go", "build", "-o", probe, "./bench/vproc/vprocprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build vprocprobe: %v: %s", err, out)
	}
	l, err := lab.Open(lab.Options{Dir: filepath.Join(dir, "lab"), Prefix: "bvp", Subnet: "10.77.12", Dist: dist, Consul: consul, Log: os.Stderr})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer l.Down(ctx)
	start := time.Now()
	loadBefore := hostinfo.LoadAvg()

	if err := l.Up(ctx, p.small); err != nil {
		return err
	}
	if err := labssh.Setup(ctx, l, "node1", "node2", sshdConf); err != nil {
		return err
	}
	if err := install(ctx, l, probe); err != nil {
		return err
	}
	if err := waitExec(ctx, l); err != nil {
		return err
	}
	logf("measuring in node1 of %d nodes: %d runs of each latency variant, %d callers for %s, %d MiB through cat", p.small, p.runs, p.callers, p.duration, p.streamMiB)
	res, err := probeRun(ctx, l, "-runs", strconv.Itoa(p.runs), "-ps-runs", strconv.Itoa(p.psRuns), "-callers", strconv.Itoa(p.callers),
		"-duration", p.duration.String(), "-stream-mib", strconv.Itoa(p.streamMiB))
	if err != nil {
		return err
	}
	machine, _ := l.Exec(ctx, "node1", "sh", "-c", "uname -r")
	unscoped, err := countUnscoped(ctx, l, "node2")
	if err != nil {
		return err
	}
	var big *result
	if p.big > 0 {
		if err := l.Down(ctx); err != nil {
			return err
		}
		if err := l.Up(ctx, p.big); err != nil {
			return err
		}
		if err := install(ctx, l, probe); err != nil {
			return err
		}
		logf("measuring ssi ps in node1 of %d nodes", p.big)
		if err := waitPs(ctx, l); err != nil {
			return err
		}
		if big, err = probeRun(ctx, l, "-only", "ps", "-ps-runs", strconv.Itoa(p.psRuns)); err != nil {
			return err
		}
	}
	machine = fmt.Sprintf("kernel %s; the host's load average (1, 5, 15 min) %s at the start and %s at the end", strings.TrimSpace(machine), loadBefore, hostinfo.LoadAvg())
	report := render(p, res, big, unscoped, machine, time.Since(start))
	fmt.Print(report)
	if p.out != "" {
		return os.WriteFile(p.out, []byte(report), 0o644)
	}
	return nil
}

// sshdConf lets the multiplexed runs open more than sshd's default 10
// sessions on one connection (the 64 callers) and more unauthenticated
// connections at once than its default 10 (fresh ssh in parallel): the
// peer at its best, not refusing the bench's load.
const sshdConf = "# bench/vproc: 64 concurrent callers\nMaxSessions 256\nMaxStartups 256\n"

// install copies vprocprobe into node1.
func install(ctx context.Context, l *lab.Lab, probe string) error {
	n1, err := l.State().Node("node1")
	if err != nil {
		return err
	}
	dst := filepath.Join(n1.Root(), "usr/local/bin/vprocprobe")
	b, err := os.ReadFile(probe)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// waitExec waits until node1's vprocd runs a program on node2.
func waitExec(ctx context.Context, l *lab.Lab) error {
	return retry(ctx, "ssi exec -n 2 -- true", func() (string, error) {
		return l.Exec(ctx, "node1", "ssi", "exec", "-n", "2", "--", "true")
	})
}

// waitPs waits until node1's ssi ps has every node's table.
func waitPs(ctx context.Context, l *lab.Lab) error {
	return retry(ctx, "ssi ps from every node", func() (string, error) {
		return l.Exec(ctx, "node1", "vprocprobe", "-only", "ps", "-ps-runs", "1")
	})
}

func retry(ctx context.Context, what string, f func() (string, error)) error {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not working after a minute: %v: %s", what, err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// probeRun runs vprocprobe in node1, its progress on stderr, and decodes
// its JSON.
func probeRun(ctx context.Context, l *lab.Lab, args ...string) (*result, error) {
	cmd, err := l.Command(ctx, "node1", append([]string{"vprocprobe"}, args...)...)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		diagnose(ctx, l)
		return nil, fmt.Errorf("vprocprobe: %w", err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("vprocprobe output %q: %w", out, err)
	}
	return &r, nil
}

// countUnscoped counts the programs a node's vprocd could not move into
// a scope of their own (they ran in vprocd's cgroup), from its journal.
func countUnscoped(ctx context.Context, l *lab.Lab, node string) (int, error) {
	out, err := l.Exec(ctx, node, "sh", "-c", "journalctl --no-pager -o cat -u openssi-vprocd | grep -c 'not moved to a scope' || true")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// diagnose prints what node1 knows of the membership and the last lines
// of its daemons' journals, before the lab is torn down.
func diagnose(ctx context.Context, l *lab.Lab) {
	for _, args := range [][]string{
		{"ssi", "nodes"},
		{"journalctl", "--no-pager", "-o", "short-precise", "-n", "40", "-u", "openssi-clmsd", "-u", "openssi-vprocd"},
	} {
		out, _ := l.Exec(ctx, "node1", args...)
		fmt.Fprintf(os.Stderr, "--- node1: %s\n%s\n", strings.Join(args, " "), out)
	}
}

// pct is the nearest-rank percentile of nanosecond samples.
func pct(ns []int64, p float64) time.Duration {
	ds := make([]time.Duration, len(ns))
	for i, n := range ns {
		ds[i] = time.Duration(n)
	}
	return stats.Percentile(ds, p)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func render(p params, r, big *result, unscoped int, machine string, took time.Duration) string {
	var b strings.Builder
	p50 := func(name string) time.Duration { return pct(r.Samples[name], 50) }
	fmt.Fprintf(&b, "# vprocd: remote exec against OpenSSH\n\n")
	fmt.Fprintf(&b, "Measured %s in the lab (`lab up -n %d`: systemd-nspawn Debian bookworm nodes on one bridge, each with Consul and openssi from the local repository) "+
		"on the project's build machine: %d cores (%s), %s, Go %s; the lab lock held, so no other lab ran (other helpers' builds and tests may have). One run of `go run ./bench/vproc` (%s). "+
		"Every figure is taken inside node1 by vprocprobe, with node2 as the target.\n\n",
		time.Now().UTC().Format("2006-01-02"), p.small, runtime.NumCPU(), hostinfo.CPUModel(), machine, runtime.Version(), took.Round(time.Second))

	fmt.Fprintf(&b, "## Remote exec of `true`, node1 to node2, %d runs of each, interleaved in a random order\n\n", len(r.Samples["exec_process"]))
	b.WriteString("| variant | p50 | p99 | mean | failed runs |\n|---|---|---|---|---|\n")
	for _, v := range []struct{ name, label string }{
		{"exec_process", "`ssi exec -n 2 -- true`, the whole process"},
		{"exec_call", "client/vproc `Exec` + `Wait`, one Client reused"},
		{"exec_call_dial", "client/vproc `New` + `Exec` + `Wait` (a new connection to vprocd each)"},
		{"ssh_mux", "`ssh node2 true`, ControlMaster already open"},
		{"ssh_fresh", "`ssh node2 true`, fresh connection"},
		{"version", "`ssi version` alone (start-up of the ssi binary)"},
		{"probe_once", "vprocprobe as a fresh process: `New` + one `Exec` + `Wait`"},
		{"probe_dial", "vprocprobe as a fresh process: `New` + one unary call (`Loads`)"},
		{"true", "parts, in node1: a fork and exec of `/bin/true`"},
		{"gate", "parts: the same through vprocd's gate (vprocd re-executed, then `true`)"},
		{"scope_bus", "parts: a transient scope started as vprocd does, through the D-Bus daemon"},
		{"scope_private", "parts: the same on systemd's private socket (vprocd used it as root before: systemd sends every signal it emits to every private connection)"},
	} {
		s := r.Samples[v.name]
		var sum int64
		for _, x := range s {
			sum += x
		}
		mean := time.Duration(0)
		if len(s) > 0 {
			mean = time.Duration(sum / int64(len(s)))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", v.label, ms(pct(s, 50)), ms(pct(s, 99)), ms(mean), r.Failed[v.name])
	}
	proc, call := p50("exec_process"), p50("exec_call")
	mux, fresh := p50("ssh_mux"), p50("ssh_fresh")
	muxRatio, freshRatio := float64(mux)/float64(proc), float64(fresh)/float64(proc)
	fmt.Fprintf(&b, "\nWhere an exec's time goes (p50s): `ssi exec` sends its request in its first package initialiser (package cmd/ssi/early, about 0.6 ms into the process), on vprocd's exec socket (a connection of its own, no gRPC), and runs the whole exec there; the rest of ssi is never initialised (`ssi version`, %s, is the full start-up it skips). So `ssi exec` = a small Go process's start and exit + the call (%s, one Client reused); "+
		"the call = the target's start of the program + vprocd to vprocd and back, the wait and the exit. After the caller's first program the start is a warm gate's (`vprocd.warm_gates`): a gate of the caller's started ahead and already in its scope is handed the program, so neither the gate's own start (a fork and exec through the gate, %s more than a plain fork and exec) nor its scope (%s through the bus) is on the way; they are made after the previous program ended, and on this 2-core machine the CPU they take (systemd's, the bus daemon's and vprocd's) is what the next exec waits for. A caller's first program (and one that finds no gate left) waits for both, overlapped.\n",
		ms(p50("version")), ms(p50("exec_call")), ms(p50("gate")-p50("true")), ms(p50("scope_bus")))
	b.WriteString("\nTargets of the issue:\n\n")
	fmt.Fprintf(&b, "- the library call p50 <= 5 ms: %s (%s)\n", verdict(call <= 5*time.Millisecond), ms(call))
	fmt.Fprintf(&b, "- the `ssi exec` process p50 <= 15 ms: %s (%s)\n", verdict(proc <= 15*time.Millisecond), ms(proc))
	fmt.Fprintf(&b, "- at least 2x faster than multiplexed ssh: %s (ssh mux p50 / ssi exec p50 = **%.1fx**; the library call: %.1fx)\n", verdict(muxRatio >= 2), muxRatio, float64(mux)/float64(call))
	fmt.Fprintf(&b, "- at least 20x faster than a fresh ssh: %s (ssh fresh p50 / ssi exec p50 = **%.1fx**; the library call: %.1fx)\n", verdict(freshRatio >= 20), freshRatio, float64(fresh)/float64(call))
	fmt.Fprintf(&b, "- for scale, published: ssh about 1.7 s fresh and 0.16 s multiplexed, Nomad `alloc exec` about 230 ms; `ssi version` was about 17 ms inside a lab node before this bench (%s here)\n\n", ms(p50("version")))

	fmt.Fprintf(&b, "## Throughput: %d concurrent callers for %s, `true` on node2\n\n", p.callers, p.duration)
	b.WriteString("| variant | execs/s | failed |\n|---|---|---|\n")
	for _, v := range []struct{ name, label string }{
		{"exec_process", "`ssi exec -n 2 -- true` processes"},
		{"exec_call", "client/vproc `Exec` calls on one Client"},
		{"ssh_mux", "`ssh node2 true` through one ControlMaster"},
	} {
		fmt.Fprintf(&b, "| %s | %.0f | %d |\n", v.label, r.Rates[v.name], r.Failed["rate_"+v.name])
	}
	fmt.Fprintf(&b, "\n`ssi exec` / multiplexed ssh: **%.1fx** (no target in the issue; the peer is to be beaten).\n\n", r.Rates["exec_process"]/r.Rates["ssh_mux"])

	fmt.Fprintf(&b, "## Stdio throughput: %d MiB of pseudo-random bytes through a `cat` on node2\n\n", p.streamMiB)
	b.WriteString("Timed from the start of the process to its exit (start-up included), the output's SHA-256 checked against the input's. " +
		"CPU seconds (user + system) of the run: the client process's own (its rusage) and, for ssi exec, vprocd's on each node (from /proc, before and after; they include vprocd's once-a-second load exchange).\n\n")
	b.WriteString("| variant | MB/s | checksum | CPU s: the client process | vprocd node1 | vprocd node2 |\n|---|---|---|---|---|---|\n")
	for _, v := range []struct{ name, label string }{
		{"exec_process", "`ssi exec -n 2 -- cat`"},
		{"ssh_fresh", "`ssh node2 cat`, fresh connection"},
		{"ssh_mux", "`ssh node2 cat` through a ControlMaster"},
	} {
		ok := "ok"
		if !r.Checksums[v.name] {
			ok = "**MISMATCH**"
		}
		c := r.StreamCPU[v.name]
		daemons := "| - | -"
		if v.name == "exec_process" {
			daemons = fmt.Sprintf("| %.2f | %.2f", c.Origin, c.Target)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %.2f %s |\n", v.label, r.Streams[v.name], ok, c.Client, daemons)
	}
	se, ss := r.Streams["exec_process"], r.Streams["ssh_fresh"]
	fmt.Fprintf(&b, "\nTarget: not slower than `ssh node2 cat`: %s (ssi exec / ssh = **%.2fx**).\n\n", verdict(se >= ss), se/ss)

	b.WriteString("## `ssi ps` over all nodes, from node1\n\n")
	b.WriteString("| lab | runs | `ssi ps` process p50 | p99 | client/vproc `Ps` p50 | p99 | failed runs |\n|---|---|---|---|---|---|---|\n")
	row := func(nodes int, r *result) {
		fmt.Fprintf(&b, "| %d nodes | %d | %s | %s | %s | %s | %d |\n", nodes, len(r.Samples["ps_process"]),
			ms(pct(r.Samples["ps_process"], 50)), ms(pct(r.Samples["ps_process"], 99)), ms(pct(r.Samples["ps_call"], 50)), ms(pct(r.Samples["ps_call"], 99)),
			r.Failed["ps_process"]+r.Failed["ps_call"])
	}
	row(p.small, r)
	if big != nil {
		row(p.big, big)
		ps := pct(big.Samples["ps_process"], 50)
		fmt.Fprintf(&b, "\nTarget: `ssi ps` p50 <= 50 ms at %d nodes: %s (%s).\n", p.big, verdict(ps <= 50*time.Millisecond), ms(ps))
	}
	fmt.Fprintf(&b, "\nPrograms that node2's vprocd ran without a scope of their own over the %d-node run (its journal's \"not moved to a scope\" warnings; each ran in vprocd's cgroup instead): **%d**.\n", p.small, unscoped)
	b.WriteString(method)
	return b.String()
}

const method = `
## Method

- The lab image has openssh-server (Debian bookworm's, default configuration) installed but disabled; the bench makes an ed25519 key pair for root in node1, authorises it on node2, records node2's host key in node1's known_hosts (so ssh checks it), raises sshd's MaxSessions and MaxStartups to 256 (64 multiplexed or parallel callers; the defaults of 10 refuse them) and starts sshd on node2 only. ssh runs with BatchMode=yes; "fresh" with ControlPath=none (a full handshake and key exchange each time), "ControlMaster" through one master opened before the runs (ControlPersist).
- vprocprobe runs inside node1 (all of its namespaces, as root): each "process" variant is a fork and exec of the program, waited for, as a shell runs it; the library variants are Go calls in the probe. Each variant is run once to warm up, then the variants are interleaved, in a new random order each round, so a slow spell of the machine (or what a fresh ssh leaves running) falls on all of them alike. The "parts" rows are run the same way inside node1: the gate is ` + "`/usr/sbin/vprocd`" + ` executed as ` + "`openssi-vproc-gate`" + ` with its pipe already opened; a scope is timed from StartTransientUnit (mode replace, a ` + "`sleep`" + ` child's pid, in user-0.slice) to systemd's job-done signal, and a job systemd reports failed is a failed run. Percentiles are nearest-rank.
- A latency run that fails (on this shared 2-core machine the lab's Consul servers can lose their leader under load, and a node whose connection was dropped by a membership flap is then not found until a leader is back) is counted in "failed runs" and not timed; the probe pauses a second and goes on, and gives up past a tenth of the runs.
- Throughput: the callers start together and loop for the duration; a failed exec is counted apart, not as done.
- ` + "`ssi ps`" + ` runs on a 3-node lab with the other measurements, then the lab is torn down and an 8-node one (3 Consul servers, 5 clients) brought up for ` + "`ssi ps`" + ` alone; the process variant prints the table to a pipe.
`
