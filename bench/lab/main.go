// Command lab measures the lab: how long `lab up -n 3` takes to bring three
// nodes to all-UP with a warm cache, the memory an idle node uses, and the
// failure-detection latency (SIGKILL of a whole node to NODEDOWN at every
// survivor) on booted nodes with systemd, alternating a follower server and
// the Raft leader as the victim.
//
//	go run ./bench/lab -dist dist -out bench/lab/RESULTS.md
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/openssi/openssi/bench/stats"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

func main() {
	dist := flag.String("dist", "dist", "dist/ with repo/ from `make repo`")
	trials := flag.Int("trials", 10, "kills")
	latIters := flag.Int("lat-iters", 1000, "lock+unlock pairs of the dlm latency probe (0: skip it)")
	out := flag.String("out", "", "write the results as Markdown here")
	flag.Parse()
	if err := run(*dist, *trials, *latIters, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/lab:", err)
		os.Exit(1)
	}
}

func run(dist string, trials, latIters int, out string) error {
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ = filepath.Abs(dist)
	dir, err := os.MkdirTemp("", "openssi-bench-lab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := lab.Open(lab.Options{Dir: dir, Prefix: "bnch", Subnet: "10.77.9", Dist: dist, Consul: consul, Log: os.Stderr})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer l.Down(ctx)
	// Warm the rootfs cache outside the timed run.
	if err := l.Up(ctx, 1); err != nil {
		return err
	}
	if err := l.Down(ctx); err != nil {
		return err
	}
	start := time.Now()
	if err := l.Up(ctx, 3); err != nil {
		return err
	}
	upTime := time.Since(start)

	time.Sleep(20 * time.Second) // idle
	mem := map[string]int64{}
	for _, n := range l.State().Nodes {
		kb, err := l.Memory(n.Name)
		if err != nil {
			return err
		}
		mem[n.Name] = kb
	}

	var lat *latency
	if latIters > 0 {
		if lat, err = measureLatency(ctx, l, dir, latIters); err != nil {
			return fmt.Errorf("dlm latency: %w", err)
		}
	}

	var follower, leader []time.Duration
	for i := 0; i < trials; i++ {
		wantLeader := i%2 == 1
		victim, err := pick(ctx, l, wantLeader)
		if err != nil {
			return err
		}
		d, err := l.KillAndMeasure(ctx, victim, time.Minute)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "trial %d: killed %s (leader %v): NODEDOWN everywhere after %s\n", i+1, victim, wantLeader, d.Round(time.Millisecond))
		if wantLeader {
			leader = append(leader, d)
		} else {
			follower = append(follower, d)
		}
		if err := l.Start(ctx, victim); err != nil {
			return err
		}
		if err := l.WaitAllUp(ctx, 2*time.Minute); err != nil {
			return err
		}
	}
	report := render(upTime, mem, lat, follower, leader)
	fmt.Print(report)
	if out != "" {
		return os.WriteFile(out, []byte(report), 0o644)
	}
	return nil
}

// pick returns the Raft leader's node, or a follower server.
func pick(ctx context.Context, l *lab.Lab, leader bool) (string, error) {
	var out string
	var err error
	for _, n := range l.State().Nodes {
		if out, err = l.Exec(ctx, n.Name, "consul", "operator", "raft", "list-peers"); err == nil {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("raft peers: %v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "Node" {
			continue
		}
		if (f[3] == "leader") == leader {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("no node with leader=%v in\n%s", leader, out)
}

// latency is dlmlat's result, read from inside node1.
type latency struct {
	Node   int     `json:"node"`
	Local  []int64 `json:"local"`
	Remote []int64 `json:"remote"`
	Consul []int64 `json:"consul"`
}

// measureLatency builds dlmlat, copies it into node1 and runs it there.
func measureLatency(ctx context.Context, l *lab.Lab, dir string, iters int) (*latency, error) {
	bin := filepath.Join(dir, "dlmlat")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./bench/lab/dlmlat")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build dlmlat: %v: %s", err, out)
	}
	node := l.State().Nodes[0].Name
	f, err := os.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cp, err := l.Command(ctx, node, "sh", "-c", "cat > /usr/local/bin/dlmlat && chmod 755 /usr/local/bin/dlmlat")
	if err != nil {
		return nil, err
	}
	cp.Stdin = f
	if out, err := cp.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy dlmlat into %s: %v: %s", node, err, out)
	}
	// The remote resource: the first node to lock a resource masters it
	// while it has locks, so another node takes it first and holds it.
	other := l.State().Nodes[1].Name
	remote, release, err := holdNL(ctx, l, other)
	if err != nil {
		return nil, fmt.Errorf("hold a resource at %s: %w", other, err)
	}
	defer release()
	fmt.Fprintf(os.Stderr, "dlm latency: %d lock+unlock pairs per variant in %s (%s held and mastered at %s)\n", iters, node, remote, other)
	out, err := l.Exec(ctx, node, "/usr/local/bin/dlmlat", "-iters", strconv.Itoa(iters), "-remote", remote)
	if err != nil {
		return nil, fmt.Errorf("dlmlat: %v: %s", err, out)
	}
	var r latency
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		return nil, fmt.Errorf("dlmlat output %q: %w", out, err)
	}
	return &r, nil
}

// latLockspace is dlmlat's lockspace.
const latLockspace = "bench-lab"

// holdNL runs `ssi lock -m NL` at node on a fresh resource of dlmlat's
// lockspace, so that node masters it (it locks it first), and returns its
// name once the lock is granted; release ends the holder (its command
// reads stdin until EOF). The name is picked so that the resource's
// directory node, the rendezvous-hash winner (daemons/dlmd/directory),
// is that node too: that changes nothing once the master is known, and
// keeps the choice right where the hash winner masters.
func holdNL(ctx context.Context, l *lab.Lab, node string) (string, func(), error) {
	v, err := l.View(ctx, node)
	if err != nil {
		return "", nil, err
	}
	var up []uint32
	for _, n := range v.Nodes {
		if n.State == cluster.Up {
			up = append(up, uint32(n.Number))
		}
	}
	res := ""
	for i := 0; res == ""; i++ {
		if name := fmt.Sprintf("lat-remote-%d", i); directory.Master(up, latLockspace, name) == uint32(v.ThisNode) {
			res = name
		}
	}
	cmd, err := l.Command(ctx, node, "ssi", "lock", "-m", "NL", latLockspace, res, "--", "sh", "-c", "echo held && exec cat >/dev/null")
	if err != nil {
		return "", nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out := &heldWriter{held: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	select {
	case <-out.held:
		return res, stop, nil
	case err := <-exited:
		return "", nil, fmt.Errorf("ssi lock -m NL %s %s exited: %v: %s", latLockspace, res, err, out.String())
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		return "", nil, fmt.Errorf("ssi lock -m NL %s %s: not granted within a minute: %s", latLockspace, res, out.String())
	}
}

// heldWriter collects a command's output and closes held once a line
// "held" came.
type heldWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	held chan struct{}
	seen bool
}

func (w *heldWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if !w.seen && strings.Contains("\n"+w.b.String(), "\nheld\n") {
		w.seen = true
		close(w.held)
	}
	return len(p), nil
}

func (w *heldWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func nanos(ns []int64) []time.Duration {
	out := make([]time.Duration, len(ns))
	for i, n := range ns {
		out[i] = time.Duration(n)
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func render(up time.Duration, mem map[string]int64, lat *latency, follower, leader []time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The lab\n\nMeasured %s on the project's 2-core build machine (other jobs may have been running).\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "- `lab up -n 3` to all nodes UP, warm cache (rootfs cached, packages built): **%s** (target <= 60 s)\n", up.Round(100*time.Millisecond))
	var names []string
	var sum int64
	for n, kb := range mem {
		names = append(names, n)
		sum += kb
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "- memory of an idle node (PSS of every process in the node: systemd, journald, networkd, the Consul server and the openssi daemons), 20 s after all-UP: **%d MiB** on average (", sum/int64(len(mem))/1024)
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d MiB", n, mem[n]/1024)
	}
	b.WriteString(")\n\n")
	if lat != nil {
		fmt.Fprintf(&b, "Uncontended EX lock + unlock from a client inside node %d (client/dlm to its dlmd; Consul's lock on the node's own agent, one session reused, in the same run). "+
			"The first node to lock a resource that no node masters becomes its master (first-requester mastering) and stays it while the resource has locks: "+
			"the probe masters its local resource by locking it first, and another node's `ssi lock -m NL` takes the remote one first and holds it for the run; "+
			"dlmd's Locks API (as `ssi locks` shows it) confirms both masters before and after the pairs:\n\n", lat.Node)
		fmt.Fprintf(&b, "| variant | pairs | p50 | p99 |\n|---|---|---|---|\n")
		for _, v := range []struct {
			name string
			ds   []time.Duration
		}{{"dlm, mastered on this node", nanos(lat.Local)}, {"dlm, mastered on another node", nanos(lat.Remote)}, {"Consul lock", nanos(lat.Consul)}} {
			fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", v.name, len(v.ds), ms(stats.Percentile(v.ds, 50)), ms(stats.Percentile(v.ds, 99)))
		}
		remote := stats.Percentile(nanos(lat.Remote), 50)
		verdict := "met"
		if remote > 500*time.Microsecond {
			verdict = "not met"
		}
		fmt.Fprintf(&b, "\nTarget: remote uncontended lock+unlock p50 <= 0.5 ms in the lab: **%s** (%s). Consul p50 / dlm remote p50: **%.1fx**.\n\n",
			verdict, ms(remote), float64(stats.Percentile(nanos(lat.Consul), 50))/float64(remote))
	}
	fmt.Fprintf(&b, "Failure detection in the lab, SIGKILL of a whole node to NODEDOWN delivered by `ssi events` at every survivor:\n\n")
	fmt.Fprintf(&b, "| victim | kills | p50 | p99 | max |\n|---|---|---|---|---|\n")
	for _, c := range []struct {
		name string
		ds   []time.Duration
	}{{"follower server", follower}, {"Raft leader", leader}, {"all", append(append([]time.Duration(nil), follower...), leader...)}} {
		if len(c.ds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d ms | %d ms | %d ms |\n", c.name, len(c.ds), stats.Percentile(c.ds, 50).Milliseconds(), stats.Percentile(c.ds, 99).Milliseconds(), stats.Percentile(c.ds, 100).Milliseconds())
	}
	b.WriteString("\nWith this few kills the p99 is the largest sample (nearest rank). A NODEDOWN is committed through Consul's Raft log, so a dead leader costs an election first (see the README).\n")
	return b.String()
}
