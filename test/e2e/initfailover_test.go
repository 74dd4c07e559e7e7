//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openssi/openssi/lab"
)

// The singleton of TestInitfailover: a small HTTP service answering with
// its node's name, wanted by openssi-init.target; and a simple unit on
// every node for ssi service.
const (
	singletonUnit = "e2e-singleton.service"
	simpleUnit    = "e2e-simple.service"
	singletonPort = "18080"
	singletonBin  = "/usr/local/bin/e2e-singleton"
	// initStopTimeout is initfailover.stop_timeout in this lab: the
	// shortest allowed, so that a failover after a crash or a partition
	// waits as little as the setting lets it (the default, 10s, would
	// make every failover take more than 10s).
	initStopTimeout = "1s"
	// pollEvery is the witnesses' sampling period.
	pollEvery = 20 * time.Millisecond
	// maxFailover bounds a failover after a crash or a partition: the
	// default stop_timeout alone (10s) would exceed it, so a setting not
	// applied fails the test. The target, p99 <= 3s, is
	// bench/failover's to measure; the test reports each figure.
	maxFailover = 10 * time.Second
)

// TestInitfailover runs initfailover on a lab of its own, three nodes,
// with a small HTTP service as the cluster's singleton (PartOf= and
// WantedBy= openssi-init.target): a witness polls every node's port from
// the host through the bridge, and from inside each node (a partitioned
// node cannot be reached from the host), and records which node answers
// when. Exactly one node runs it at start and ssi init and ssi nodes agree
// on which; ssi service restart --all acts on every node, status is open
// to a user and stop is not; ssi init move hands the service over; a
// partition of the init node and last a SIGKILL of it bring the service
// back on another node. At no moment may two nodes answer.
func TestInitfailover(t *testing.T) {
	l := ownLab(t, "e2ei", "10.77.7", 3, "openssi-initfailover", 150)
	il := &ilab{l: l, num: numbers(t, view(t, l, "node1")), ip: map[string]string{}}
	for _, n := range l.State().Nodes {
		il.ip[n.Name] = n.IP
		il.names = append(il.names, n.Name)
	}
	t.Cleanup(func() { il.logWarnings(t) })
	t0 := time.Now()
	il.setup(t)
	t.Logf("singleton installed, initfailover.stop_timeout %s, in %s", initStopTimeout, time.Since(t0).Round(100*time.Millisecond))
	il.w = startWitness(t, il)
	t.Cleanup(func() {
		il.w.stop()
		t.Logf("witness: %s", il.w.counts())
		if bad := il.w.overlaps(time.Time{}); len(bad) > 0 {
			t.Errorf("two nodes answered at once over the whole run:\n%s", strings.Join(bad, "\n"))
		}
	})
	for _, c := range []struct {
		name string
		f    func(*testing.T, *ilab)
	}{
		{"OneInitAtStart", testInitOne},
		{"ServiceRestartAll", testInitServiceAll},
		{"ServiceUsers", testInitServiceUsers},
		{"Move", testInitMove},
		{"Partition", testInitPartition},
		{"Kill", testInitKill}, // last: the killed node stays down
	} {
		t1 := time.Now()
		if !t.Run(c.name, func(t *testing.T) { c.f(t, il) }) && c.name == "OneInitAtStart" {
			t.FailNow()
		}
		t.Logf("%s took %s", c.name, time.Since(t1).Round(100*time.Millisecond))
	}
}

// ilab is the lab of TestInitfailover.
type ilab struct {
	l     *lab.Lab
	num   map[string]int    // node number by name
	ip    map[string]string // address by name
	names []string
	w     *witness
}

func (il *ilab) name(number int) string {
	for n, k := range il.num {
		if k == number {
			return n
		}
	}
	return fmt.Sprintf("node#%d", number)
}

// run runs a command in a node, returning its combined output and exit
// status (-1 when it did not exit by itself).
func (il *ilab) run(t *testing.T, node string, args ...string) (string, int) {
	t.Helper()
	return runOn(t, il.l, 2*time.Minute, node, args...)
}

func (il *ilab) must(t *testing.T, node string, args ...string) string {
	t.Helper()
	return mustOn(t, il.l, 2*time.Minute, node, args...)
}

// setup installs the singleton and the simple unit on every node, sets
// initfailover.stop_timeout and restarts initfailover so that the init
// node starts the singleton.
func (il *ilab) setup(t *testing.T) {
	bin := buildSingleton(t)
	script := `set -e
cat > /etc/systemd/system/` + singletonUnit + ` <<EOF
[Unit]
Description=OpenSSI e2e singleton (HTTP, answers its node's name)
PartOf=openssi-init.target

[Service]
ExecStart=` + singletonBin + ` serve :` + singletonPort + ` $1
TimeoutStopSec=500ms

[Install]
WantedBy=openssi-init.target
EOF
cat > /etc/systemd/system/` + simpleUnit + ` <<EOF
[Unit]
Description=OpenSSI e2e simple unit (ssi service --all)

[Service]
ExecStart=/bin/sleep infinity
EOF
grep -q '^initfailover:' /etc/openssi/openssi.yaml || printf 'initfailover:\n  stop_timeout: %s\n' "$2" >> /etc/openssi/openssi.yaml
systemctl daemon-reload
systemctl enable ` + singletonUnit + `
systemctl start ` + simpleUnit + `
systemctl restart openssi-initfailover`
	var wg sync.WaitGroup
	errs := make([]string, len(il.names))
	for i, n := range il.names {
		installFile(t, il.l, n, bin, singletonBin)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := il.l.Exec(ctxFor(t, 2*time.Minute), n, "sh", "-c", script, "sh", n, initStopTimeout); err != nil {
				errs[i] = fmt.Sprintf("%s: %v\n%s", n, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
	for _, n := range il.names {
		if err := il.l.WaitUnitsActive(ctxFor(t, time.Minute), n, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
}

// logWarnings logs what initfailover warned of on the running nodes
// (systemd's answers it did not expect show up there first).
func (il *ilab) logWarnings(t *testing.T) {
	for _, n := range il.l.State().Nodes {
		out, err := il.l.Exec(ctxFor(t, 30*time.Second), n.Name, "journalctl", "--no-pager", "-o", "cat", "-u", "openssi-initfailover", "--grep", "level=(warning|error)")
		if err != nil {
			continue // killed, or no line matched
		}
		t.Logf("initfailover's warnings on %s:\n%s", n.Name, tail(out, 20))
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// initOf returns the init node as ssi init on node says it (0: none).
func (il *ilab) initOf(t *testing.T, node string) int {
	t.Helper()
	out := il.must(t, node, "ssi", "init", "-o", "json")
	var i struct {
		Node int `json:"init_node"`
	}
	if err := json.Unmarshal([]byte(out), &i); err != nil {
		t.Fatalf("%s: ssi init -o json: %v\n%s", node, err, out)
	}
	return i.Node
}

// markedInit returns the node ssi nodes on node marks with + (0: none).
func (il *ilab) markedInit(t *testing.T, node string) int {
	t.Helper()
	out := il.must(t, node, "ssi", "nodes")
	found := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.Contains(f[0], "+") {
			continue
		}
		n, err := strconv.Atoi(strings.Trim(f[0], "*+"))
		if err != nil {
			continue
		}
		if found != 0 {
			t.Errorf("%s: ssi nodes marks two init nodes:\n%s", node, out)
		}
		found = n
	}
	return found
}

// agreeOnInit waits until ssi init and ssi nodes on every node in nodes
// name the same init node, and returns its name.
func (il *ilab) agreeOnInit(t *testing.T, nodes []string, want string) string {
	t.Helper()
	var last string
	got := ""
	if !waitUntil(30*time.Second, func() bool {
		seen := map[int]bool{}
		var b strings.Builder
		for _, n := range nodes {
			i, m := il.initOf(t, n), il.markedInit(t, n)
			fmt.Fprintf(&b, "%s: ssi init %d, ssi nodes %d; ", n, i, m)
			seen[i], seen[m] = true, true
		}
		last = b.String()
		if len(seen) != 1 || seen[0] {
			return false
		}
		for k := range seen {
			got = il.name(k)
		}
		return want == "" || got == want
	}) {
		t.Fatalf("ssi init and ssi nodes do not agree on one init node (want %q): %s", want, last)
	}
	return got
}

// waitAnswering waits until a node other than not answers from the host
// after since, and returns it and the time of its first answer.
func (il *ilab) waitAnswering(t *testing.T, since time.Time, not string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	var node string
	var at time.Time
	if !waitUntil(timeout, func() bool {
		node, at = il.w.firstOK(since, not)
		return node != ""
	}) {
		t.Fatalf("no node but %q answered within %s of %s", not, timeout, since.Format("15:04:05.000"))
	}
	return node, at
}

// noOverlap fails the test when two nodes answered at once since from.
func (il *ilab) noOverlap(t *testing.T, from time.Time) {
	t.Helper()
	if bad := il.w.overlaps(from); len(bad) > 0 {
		t.Errorf("two nodes answered at once:\n%s", strings.Join(bad, "\n"))
	}
}

// activeOn lists the nodes where systemd says the singleton is active.
func (il *ilab) activeOn(t *testing.T, nodes []string) []string {
	var on []string
	for _, n := range nodes {
		out, _ := il.run(t, n, "systemctl", "is-active", singletonUnit)
		if strings.TrimSpace(out) == "active" {
			on = append(on, n)
		}
	}
	return on
}

func testInitOne(t *testing.T, il *ilab) {
	from := time.Now().Add(-time.Minute)
	node, at := il.waitAnswering(t, from, "", time.Minute)
	time.Sleep(2 * time.Second)
	if on := il.w.answeredSince(at); len(on) != 1 {
		t.Errorf("want one node answering after the start, got %v", on)
	}
	if on := il.activeOn(t, il.names); len(on) != 1 || on[0] != node {
		t.Errorf("systemd runs %s on %v, want on %s only", singletonUnit, on, node)
	}
	if init := il.agreeOnInit(t, il.names, ""); init != node {
		t.Errorf("ssi init names %s, but the singleton answers on %s", init, node)
	}
	il.noOverlap(t, from)
	t.Logf("init node %s; the singleton answers there only", node)
}

// unitLines decodes ssi service -o json.
func unitLines(t *testing.T, out string) []struct {
	Node   int    `json:"node"`
	Active string `json:"active_state"`
	Sub    string `json:"sub_state"`
	CPID   int64  `json:"main_cpid"`
	Err    string `json:"error"`
} {
	t.Helper()
	var lines []struct {
		Node   int    `json:"node"`
		Active string `json:"active_state"`
		Sub    string `json:"sub_state"`
		CPID   int64  `json:"main_cpid"`
		Err    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &lines); err != nil {
		t.Fatalf("ssi service -o json: %v\n%s", err, out)
	}
	return lines
}

func testInitServiceAll(t *testing.T, il *ilab) {
	before := map[int]int64{}
	for _, u := range unitLines(t, il.must(t, "node2", "ssi", "service", "status", simpleUnit, "--all", "-o", "json")) {
		before[u.Node] = u.CPID
	}
	if len(before) != 3 {
		t.Fatalf("ssi service status --all: want 3 nodes, got %v", before)
	}
	out := il.must(t, "node2", "ssi", "service", "restart", "--all", simpleUnit)
	t.Logf("ssi service restart --all %s:\n%s", simpleUnit, out)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 4 || !strings.HasPrefix(rows[0], "NODE") {
		t.Errorf("want a header and one line per node, got:\n%s", out)
	}
	seen := map[int]bool{}
	for _, r := range rows[1:] {
		f := strings.Fields(r)
		if len(f) < 4 {
			t.Errorf("short line %q", r)
			continue
		}
		n, _ := strconv.Atoi(f[0])
		seen[n] = true
		if f[3] != "active" && il.cgroupGlitch(t, n) {
			// systemd in an nspawn node on this host's cgroup v1 now and
			// then cannot put a restarted process in the unit's cgroup
			// (exit 219/CGROUP, "Failed to attach to cgroup"): the
			// restart was asked and carried out; systemd failed it. Ask
			// once more, through ssi service as before.
			again := strings.Split(strings.TrimSpace(il.must(t, "node2", "ssi", "service", "restart", "-n", f[0], simpleUnit)), "\n")
			t.Logf("node %d: systemd failed the restart with 219/CGROUP; again: %q", n, again)
			if len(again) == 2 {
				r = again[1]
				f = strings.Fields(r)
			}
		}
		if len(f) < 4 || f[1] != simpleUnit || f[2] != "loaded" || f[3] != "active" || strings.Contains(r, "error") {
			t.Errorf("line %q: want %s loaded active", r, simpleUnit)
		}
	}
	for name, n := range il.num {
		if !seen[n] {
			t.Errorf("no line for %s (node %d)", name, n)
		}
	}
	for _, u := range unitLines(t, il.must(t, "node2", "ssi", "service", "status", simpleUnit, "--all", "-o", "json")) {
		if u.Active != "active" || u.CPID == 0 || u.CPID == before[u.Node] {
			t.Errorf("node %d after the restart: %s, main cpid %d (before %d): want active with a new main process", u.Node, u.Active, u.CPID, before[u.Node])
		}
	}
}

// cgroupGlitch reports whether systemd on node number n failed the simple
// unit's last start with 219/CGROUP (it could not attach the process to
// the unit's cgroup), a fault of systemd inside nspawn on this host, not
// of what asked for the start.
func (il *ilab) cgroupGlitch(t *testing.T, n int) bool {
	for name, num := range il.num {
		if num == n {
			out, _ := il.run(t, name, "systemctl", "show", "-p", "ExecMainStatus", "--value", simpleUnit)
			return strings.TrimSpace(out) == "219"
		}
	}
	return false
}

func testInitServiceUsers(t *testing.T, il *ilab) {
	user := []string{"runuser", "-u", "nobody", "-g", "openssi", "--"}
	out, code := il.run(t, "node3", append(user, "ssi", "service", "status", simpleUnit, "--all")...)
	if code != 0 || strings.Count(strings.TrimSpace(out), "\n") != 3 || strings.Contains(out, "error") {
		t.Errorf("ssi service status --all as nobody: exit %d, want 0 and a line per node:\n%s", code, out)
	}
	for _, target := range [][]string{nil, {"-n", strconv.Itoa(il.num["node1"])}} {
		args := append(append(user, "ssi", "service", "stop", simpleUnit), target...)
		out, code := il.run(t, "node3", args...)
		if code == 0 || !strings.Contains(out, "only root") {
			t.Errorf("%s: exit %d, want a refusal (only root):\n%s", strings.Join(args, " "), code, out)
		}
	}
	for _, n := range []string{"node3", "node1"} {
		if out, _ := il.run(t, n, "systemctl", "is-active", simpleUnit); strings.TrimSpace(out) != "active" {
			t.Errorf("%s: %s is %s after a refused stop", n, simpleUnit, strings.TrimSpace(out))
		}
	}
}

func testInitMove(t *testing.T, il *ilab) {
	from := il.agreeOnInit(t, il.names, "")
	var to, caller string
	for _, n := range il.names {
		if n == from {
			continue
		}
		if to == "" {
			to = n
		} else {
			caller = n
		}
	}
	t0 := time.Now()
	out := il.must(t, caller, "ssi", "init", "move", strconv.Itoa(il.num[to]))
	t.Logf("on %s: ssi init move %d: %s", caller, il.num[to], strings.TrimSpace(out))
	node, at := il.waitAnswering(t, t0, from, 30*time.Second)
	if node != to {
		t.Errorf("after ssi init move %d the singleton answers on %s, want %s", il.num[to], node, to)
	}
	stopped := il.w.lastOK(from, t0.Add(-time.Second))
	t.Logf("move %s -> %s: old stopped answering %s after the command, new answered %s after it (gap %s)",
		from, to, stopped.Sub(t0).Round(time.Millisecond), at.Sub(t0).Round(time.Millisecond), at.Sub(stopped).Round(time.Millisecond))
	time.Sleep(time.Second)
	if on := il.w.answeredSince(at); len(on) != 1 || on[0] != to {
		t.Errorf("after the move, answering: %v, want %s only", on, to)
	}
	if on := il.activeOn(t, il.names); len(on) != 1 || on[0] != to {
		t.Errorf("systemd runs %s on %v, want on %s only", singletonUnit, on, to)
	}
	il.agreeOnInit(t, il.names, to)
	il.noOverlap(t, t0.Add(-time.Second))
}

func testInitPartition(t *testing.T, il *ilab) {
	cut := il.agreeOnInit(t, il.names, "")
	if !waitUntil(10*time.Second, func() bool { return il.w.insideOK(cut, time.Now().Add(-time.Second)) }) {
		t.Fatalf("the probe inside %s does not see the singleton answering", cut)
	}
	t0 := time.Now()
	if err := il.l.Partition(cut); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			_ = il.l.Heal(cut)
		}
	}()
	node, at := il.waitAnswering(t, t0, cut, time.Minute)
	// The cut node's own probe must have kept watching past the new
	// node's start, else "it stopped first" would be vacuous.
	if !waitUntil(10*time.Second, func() bool { return il.w.insideSampled(cut, at) }) {
		t.Errorf("the probe inside %s stopped sampling before %s started: the cut node's side is not witnessed", cut, node)
	}
	stopped := il.w.lastOK(cut, t0.Add(-time.Second))
	t.Logf("partition of %s: it stopped answering %s after the cut; %s answered %s after the cut (gap %s)",
		cut, stopped.Sub(t0).Round(time.Millisecond), node, at.Sub(t0).Round(time.Millisecond), at.Sub(stopped).Round(time.Millisecond))
	if d := at.Sub(t0); d >= maxFailover {
		t.Errorf("the singleton answered again %s after the cut, want under %s (initfailover.stop_timeout %s)", d.Round(time.Millisecond), maxFailover, initStopTimeout)
	}
	if !stopped.Before(at) {
		t.Errorf("the cut-off %s last answered at %s, not before %s first answered at %s", cut, stopped.Format("15:04:05.000"), node, at.Format("15:04:05.000"))
	}
	il.noOverlap(t, t0.Add(-time.Second))
	if err := il.l.Heal(cut); err != nil {
		t.Fatal(err)
	}
	healed = true
	checkAllUp(t, il.l, 3)
	th := time.Now()
	il.agreeOnInit(t, il.names, node)
	time.Sleep(2 * time.Second)
	if on := il.w.answeredSince(th); len(on) != 1 || on[0] != node {
		t.Errorf("after the heal, answering: %v, want %s only", on, node)
	}
	if on := il.activeOn(t, il.names); len(on) != 1 || on[0] != node {
		t.Errorf("after the heal systemd runs %s on %v, want on %s only", singletonUnit, on, node)
	}
	il.noOverlap(t, t0.Add(-time.Second))
}

func testInitKill(t *testing.T, il *ilab) {
	victim := il.agreeOnInit(t, il.names, "")
	var others []string
	for _, n := range il.names {
		if n != victim {
			others = append(others, n)
		}
	}
	leader := consulLeader(t, il, others[0])
	t0 := time.Now()
	if err := il.l.Kill(ctxFor(t, time.Minute), victim); err != nil {
		t.Fatal(err)
	}
	node, at := il.waitAnswering(t, t0, victim, time.Minute)
	d := at.Sub(t0)
	t.Logf("SIGKILL of the init node %s (Consul leader before: %s): the singleton answered on %s %s later (target p99 <= 3s)",
		victim, leader, node, d.Round(time.Millisecond))
	if d >= maxFailover {
		t.Errorf("the singleton answered again %s after the kill, want under %s (initfailover.stop_timeout %s)", d.Round(time.Millisecond), maxFailover, initStopTimeout)
	}
	il.noOverlap(t, t0.Add(-time.Second))
	il.agreeOnInit(t, others, node)
	time.Sleep(time.Second)
	if on := il.w.answeredSince(at); len(on) != 1 || on[0] != node {
		t.Errorf("after the failover, answering: %v, want %s only", on, node)
	}
}

// consulLeader names the Consul Raft leader as node sees it.
func consulLeader(t *testing.T, il *ilab, node string) string {
	out, code := il.run(t, node, "consul", "operator", "raft", "list-peers")
	if code != 0 {
		return "unknown"
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && strings.Contains(line, "leader") {
			return f[0]
		}
	}
	return "unknown"
}

// sample is one poll of a node's port.
type sample struct {
	at     time.Time
	node   string // the node polled
	inside bool   // by the probe inside the node, not from the host
	ok     bool
	body   string
}

// witness polls every node's port from the host and from inside each
// node.
type witness struct {
	il     *ilab
	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup

	mu      sync.Mutex
	samples []sample
}

func startWitness(t *testing.T, il *ilab) *witness {
	ctx, cancel := context.WithCancel(context.Background())
	w := &witness{il: il, ctx: ctx, cancel: cancel}
	for _, n := range il.names {
		w.wg.Add(1)
		go w.poll(n, "http://"+il.ip[n]+":"+singletonPort+"/")
		w.startProbe(t, n)
	}
	return w
}

func (w *witness) add(s sample) {
	w.mu.Lock()
	w.samples = append(w.samples, s)
	w.mu.Unlock()
}

func (w *witness) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *witness) poll(node, url string) {
	defer w.wg.Done()
	c := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		at := time.Now()
		s := sample{at: at, node: node}
		if r, err := c.Get(url); err == nil {
			b, err := io.ReadAll(io.LimitReader(r.Body, 256))
			r.Body.Close()
			s.ok = err == nil && r.StatusCode == http.StatusOK
			s.body = strings.TrimSpace(string(b))
		}
		w.add(s)
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// startProbe starts the probe inside node (its output ends when the node
// dies).
func (w *witness) startProbe(t *testing.T, node string) {
	cmd, err := w.il.l.Command(w.ctx, node, singletonBin, "probe", "http://127.0.0.1:"+singletonPort+"/", pollEvery.String())
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the probe in %s: %v", node, err)
	}
	// The probe inside a node that is still running holds the pipe
	// open: close it when the witness stops (the probe then exits on
	// its next write).
	stopped := make(chan struct{})
	go func() {
		select {
		case <-w.ctx.Done():
			out.Close()
		case <-stopped:
		}
	}()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(stopped)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				continue
			}
			s := sample{at: time.Unix(0, ns), node: node, inside: true, ok: f[1] == "ok"}
			if len(f) > 2 {
				s.body = f[2]
			}
			w.add(s)
		}
		_ = cmd.Wait()
	}()
}

func (w *witness) snapshot() []sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := append([]sample(nil), w.samples...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].at.Before(s[j].at) })
	return s
}

// counts says how many samples each poller took and how many answered.
func (w *witness) counts() string {
	type key struct {
		node   string
		inside bool
	}
	all, ok := map[key]int{}, map[key]int{}
	for _, s := range w.snapshot() {
		k := key{s.node, s.inside}
		all[k]++
		if s.ok {
			ok[k]++
		}
	}
	var parts []string
	for _, n := range w.il.names {
		for _, inside := range []bool{false, true} {
			k := key{n, inside}
			where := "host"
			if inside {
				where = "inside"
			}
			parts = append(parts, fmt.Sprintf("%s from %s %d samples (%d answered)", n, where, all[k], ok[k]))
		}
	}
	return strings.Join(parts, "; ")
}

// firstOK returns the first node but not answering at or after since.
func (w *witness) firstOK(since time.Time, not string) (string, time.Time) {
	for _, s := range w.snapshot() {
		if s.ok && s.node != not && !s.at.Before(since) {
			return s.node, s.at
		}
	}
	return "", time.Time{}
}

// lastOK returns the last time node answered (from anywhere) after since.
func (w *witness) lastOK(node string, since time.Time) time.Time {
	var last time.Time
	for _, s := range w.snapshot() {
		if s.ok && s.node == node && !s.at.Before(since) {
			last = s.at
		}
	}
	return last
}

// answeredSince lists the nodes that answered at or after since.
func (w *witness) answeredSince(since time.Time) []string {
	seen := map[string]bool{}
	for _, s := range w.snapshot() {
		if s.ok && !s.at.Before(since) {
			seen[s.node] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (w *witness) insideOK(node string, since time.Time) bool {
	for _, s := range w.snapshot() {
		if s.inside && s.node == node && s.ok && !s.at.Before(since) {
			return true
		}
	}
	return false
}

// insideSampled reports whether node's own probe sampled after at.
func (w *witness) insideSampled(node string, at time.Time) bool {
	for _, s := range w.snapshot() {
		if s.inside && s.node == node && s.at.After(at) {
			return true
		}
	}
	return false
}

// span is a run of answers of one node seen by one poller.
type span struct {
	node       string
	inside     bool
	start, end time.Time
}

// overlaps returns the pairs of spans of different nodes that intersect,
// and answers naming the wrong node, since from. Each poller's
// consecutive answers make a span: the node answered all along it.
func (w *witness) overlaps(from time.Time) []string {
	type key struct {
		node   string
		inside bool
	}
	open := map[key]*span{}
	var spans []span
	var bad []string
	for _, s := range w.snapshot() {
		if s.at.Before(from) {
			continue
		}
		k := key{s.node, s.inside}
		if s.ok && s.body != s.node {
			bad = append(bad, fmt.Sprintf("%s answered %q at %s", s.node, s.body, s.at.Format("15:04:05.000")))
		}
		switch sp := open[k]; {
		case s.ok && sp == nil:
			open[k] = &span{node: s.node, inside: s.inside, start: s.at, end: s.at}
		case s.ok:
			sp.end = s.at
		case sp != nil:
			spans = append(spans, *sp)
			delete(open, k)
		}
	}
	for _, sp := range open {
		spans = append(spans, *sp)
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.node != b.node && !a.end.Before(b.start) && !b.end.Before(a.start) {
				bad = append(bad, fmt.Sprintf("%s answered %s..%s and %s answered %s..%s", a.node,
					a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"), b.node, b.start.Format("15:04:05.000"), b.end.Format("15:04:05.000")))
			}
		}
	}
	return bad
}
