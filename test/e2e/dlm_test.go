//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openssi/openssi/lab"
	"github.com/openssi/openssi/test/e2e/hammer/history"
)

// TestDlm runs dlmd on a lab of its own, three nodes: access control from
// inside the nodes, then mutual exclusion through the loss of the master of
// the hottest resource.
func TestDlm(t *testing.T) {
	three := ownLab(t, "e2ed", "10.77.4", 3, "openssi-dlmd", 150)
	t.Run("AccessControl", func(t *testing.T) { testDlmAccess(t, three) })
	t.Run("MutualExclusionThroughNodeLoss", func(t *testing.T) { testDlmNodeLoss(t, three, powerCut) })
	t.Run("MutualExclusionThroughPartitionWithMismatchedLeases", func(t *testing.T) { testDlmNodeLoss(t, three, partition) })
}

// disruption is how testDlmNodeLoss loses the master of the hot resource.
type disruption int

const (
	// powerCut kills the master's container and starts it again.
	powerCut disruption = iota
	// partition cuts the master's link and heals it; the master was set
	// to a longer dlmd.lease than the others, so the cut node, which
	// keeps granting its own clients until it fences, has the longest
	// setting (the case that broke exclusion before the lease was
	// agreed).
	partition
)

// Leases of the partition run: the master's and everyone else's.
const (
	longLease  = "3s"
	shortLease = "300ms"
)

// setLease gives node's dlmd the lease setting through a unit drop-in
// (OPENSSI_DLMD_LEASE) and restarts it.
func setLease(t *testing.T, l *lab.Lab, node, lease string) {
	t.Helper()
	script := `set -e
d=/etc/systemd/system/openssi-dlmd.service.d
mkdir -p "$d"
printf '[Service]\nEnvironment=OPENSSI_DLMD_LEASE=%s\n' "$1" > "$d/e2e-lease.conf"
systemctl daemon-reload
systemctl restart openssi-dlmd`
	if out, err := l.Exec(ctxFor(t, time.Minute), node, "sh", "-c", script, "sh", lease); err != nil {
		t.Fatalf("%s: set dlmd.lease %s: %v\n%s", node, lease, err, out)
	}
}

// attachUnitLogs prints the last lines of one unit's journal ("": the
// whole journal) at every node when the test failed (a killed node's is
// read from its disk).
func attachUnitLogs(t *testing.T, l *lab.Lab, unit string, lines int) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		s := l.State()
		if s == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, n := range s.Nodes {
			out, _ := l.Logs(ctx, n.Name, unit, lines)
			what := unit
			if what == "" {
				what = "journal"
			}
			t.Logf("--- %s of %s ---\n%s", what, n.Name, out)
		}
	})
}

// testDlmAccess: `ssi lock` as an unprivileged user is refused on a
// root-only lockspace ("openssi." names) and on one root created on another
// node, works on its own lockspace on every node, and a user outside the
// openssi group cannot reach dlmd's socket at all.
func testDlmAccess(t *testing.T, l *lab.Lab) {
	run := func(node string, args ...string) (string, error) {
		return l.Exec(ctxFor(t, time.Minute), node, args...)
	}
	asUser := []string{"runuser", "-u", "nobody", "-g", "openssi", "--"}
	if out, err := run("node1", "ssi", "lock", "e2e-rootonly", "r", "--", "true"); err != nil {
		t.Fatalf("root creates a lockspace: %v\n%s", err, out)
	}
	refused := func(node, lockspace, why string, args []string) {
		t.Helper()
		out, err := run(node, append(args, "ssi", "lock", lockspace, "r", "--", "echo", "inside")...)
		if err == nil || strings.Contains(out, "inside") || !strings.Contains(out, "permission denied") {
			t.Errorf("%s on %s: %s: want a refusal (permission denied), got err %v:\n%s", lockspace, node, why, err, out)
		}
	}
	refused("node2", "openssi.e2e", "the system's lockspaces are root's", asUser)
	refused("node3", "e2e-rootonly", "a lockspace root created on node1", asUser)
	refused("node1", "e2e-nobody", "outside the openssi group the socket is closed", []string{"runuser", "-u", "nobody", "--"})
	for _, node := range []string{"node2", "node3", "node1"} {
		if out, err := run(node, append(asUser, "ssi", "lock", "e2e-nobody", "r", "--", "echo", "inside")...); err != nil || !strings.Contains(out, "inside") {
			t.Errorf("the user's own lockspace on %s: %v\n%s", node, err, out)
		}
	}
	if out, err := run("node2", "ssi", "lock", "openssi.e2e", "r", "--", "echo", "inside"); err != nil || !strings.Contains(out, "inside") {
		t.Errorf("root on a system lockspace: %v\n%s", err, out)
	}
}

// hammerRun is one node's hammer.
type hammerRun struct {
	node    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  lockedBuffer
	started int64 // CLOCK_MONOTONIC before the start

	mu       sync.Mutex
	recs     []history.Record
	startAt  int64 // CLOCK_MONOTONIC when its start record arrived
	garbage  []string
	done     chan struct{} // closed when the hammer exited
	err      error
	finished time.Time
}

// lockedBuffer is a bytes.Buffer the command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (h *hammerRun) snapshot() []history.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]history.Record(nil), h.recs...)
}

// countCS counts h's critical sections that began after from, on res when
// res is not empty.
func (h *hammerRun) countCS(from int64, res string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Kind == history.KindCS && r.T0 > from && (res == "" || r.Res == res) {
			n++
		}
	}
	return n
}

func (h *hammerRun) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var r history.Record
		err := json.Unmarshal(sc.Bytes(), &r)
		h.mu.Lock()
		if err != nil {
			h.garbage = append(h.garbage, sc.Text())
		} else {
			if r.Kind == history.KindStart {
				h.startAt = history.Mono()
			}
			h.recs = append(h.recs, r)
		}
		h.mu.Unlock()
	}
}

// buildHammer builds test/e2e/hammer, static, and returns its path.
func buildHammer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hammer")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/e2e/hammer")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the hammer: %v\n%s", err, out)
	}
	return bin
}

// installFile copies a host file into a running node (through the
// container, not behind its back into the overlay).
func installFile(t *testing.T, l *lab.Lab, node, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd, err := l.Command(ctxFor(t, time.Minute), node, "sh", "-c", `cat > "$1.tmp" && chmod 755 "$1.tmp" && mv "$1.tmp" "$1"`, "sh", dst)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install %s into %s: %v\n%s", dst, node, err, out)
	}
}

// waitUntil polls cond every 50ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// testDlmNodeLoss is the lab version of the integration test
// TestDlmMutualExclusionThroughNodeLoss: a hammer (test/e2e/hammer) on
// every node hammers a few resources with EX locks, keeping a counter and
// its writer in each value block and logging every critical section; the
// master of the hottest resource (as `ssi locks` reports it) is power-cut
// mid-run, and later powered back on while the survivors keep going (its
// NODEUP is a recovery under load). The survivors must go on, no two
// holders may ever overlap, no increment may be lost or seen twice while
// the value block is valid (it may turn not valid only once a node was
// lost), and every hammer must stop when told (nothing hangs). The checker
// is history.Check, run on the merged logs; the lab's containers share
// CLOCK_MONOTONIC with the host.
//
// With how == partition the master's link is cut instead, and healed
// later: the cut node keeps granting its own clients until it fences, and
// the survivors must not grant what it held before its lease ran out, with
// the master's dlmd.lease set ten times the others' (the cluster follows
// the largest). The master is chosen before the hammers start: its hammer
// starts alone, so it is the first to ask for the hot resource and masters
// it.
func testDlmNodeLoss(t *testing.T, l *lab.Lab, how disruption) {
	ls := map[disruption]string{powerCut: "hammer", partition: "hammer-cut"}[how]
	const (
		hot      = "hot"
		clients  = 3
		progress = 300 // critical sections each survivor, and on hot, must make after the kill and after the rejoin
		minPhase = 5 * time.Second
	)
	resources := []string{hot, "r1", "r2", "r3"}
	bin := buildHammer(t)
	nodes := l.State().Nodes
	for _, n := range nodes {
		installFile(t, l, n.Name, bin, "/usr/local/bin/hammer")
	}

	nums := numbers(t, view(t, l, "node1"))
	t.Logf("nodes %v", nums)

	// The partition's victim, chosen now: the last node, with the long
	// lease, whose hammer starts first.
	first := -1
	if how == partition {
		first = len(nodes) - 1
		for i, n := range nodes {
			lease := shortLease
			if i == first {
				lease = longLease
			}
			setLease(t, l, n.Name, lease)
		}
		for _, n := range nodes {
			if err := l.WaitUnitsActive(ctxFor(t, time.Minute), n.Name, 30*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("dlmd.lease %s on %s, %s on the others", longLease, nodes[first].Name, shortLease)
		// A node whose setting differs says so and follows the cluster's.
		if !waitUntil(30*time.Second, func() bool {
			out, _ := l.Logs(ctxFor(t, time.Minute), nodes[0].Name, "openssi-dlmd", 200)
			return strings.Contains(out, "differs from the cluster") && strings.Contains(out, "cluster="+longLease)
		}) {
			out, _ := l.Logs(ctxFor(t, time.Minute), nodes[0].Name, "openssi-dlmd", 50)
			t.Errorf("%s (dlmd.lease %s) did not log that the cluster's lease is %s:\n%s", nodes[0].Name, shortLease, longLease, out)
		}
	}

	ctx := ctxFor(t, 10*time.Minute)
	var runs []*hammerRun
	order := make([]int, 0, len(nodes))
	if first >= 0 {
		order = append(order, first)
	}
	for i := range nodes {
		if i != first {
			order = append(order, i)
		}
	}
	for k, i := range order {
		n := nodes[i]
		idx, err := strconv.Atoi(strings.TrimPrefix(n.Name, "node"))
		if err != nil {
			t.Fatal(err)
		}
		h := &hammerRun{node: n.Name, done: make(chan struct{})}
		h.cmd, err = l.Command(ctx, n.Name, "hammer", "-node", fmt.Sprint(idx), "-clients", fmt.Sprint(clients),
			"-lockspace", ls, "-resources", strings.Join(resources, ","), "-hold", "200us", "-lock-timeout", "75s", "-duration", "5m")
		if err != nil {
			t.Fatal(err)
		}
		h.cmd.Stderr = &h.stderr
		stdout, err := h.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if h.stdin, err = h.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		h.started = history.Mono()
		if err := h.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			h.read(stdout)
			err := h.cmd.Wait()
			h.mu.Lock()
			h.err, h.finished = err, time.Now()
			h.mu.Unlock()
			close(h.done)
		}()
		runs = append(runs, h)
		if k == 0 && first >= 0 && !waitUntil(time.Minute, func() bool { return h.countCS(0, hot) >= 20 }) {
			t.Fatalf("%s: the first hammer made no progress on %q in a minute; stderr: %s", h.node, hot, h.stderr.String())
		}
	}
	t.Cleanup(func() { // the test failed half-way: do not leave them running
		for _, h := range runs {
			_ = h.stdin.Close()
		}
	})

	// Mid-run: a few seconds in, every node well into the hot resource.
	begun := time.Now()
	if !waitUntil(time.Minute, func() bool {
		for _, h := range runs {
			if h.countCS(0, hot) < 100 {
				return false
			}
		}
		return time.Since(begun) >= minPhase
	}) {
		for _, h := range runs {
			t.Logf("%s: %d critical sections on %s; stderr: %s", h.node, h.countCS(0, hot), hot, h.stderr.String())
		}
		t.Fatal("the hammers did not get going within a minute")
	}
	// The victim is the master of hot, as dlmd reports it (the first node
	// to lock a resource may become its master: not a rule the test can
	// compute).
	victimNum := dlmMaster(t, l, nodes[0].Name, ls, hot)
	var victim string
	for name, num := range nums {
		if uint32(num) == victimNum {
			victim = name
		}
	}
	if victim == "" {
		t.Fatalf("dlmd reports %q mastered on node %d, which is not one of %v", hot, victimNum, nums)
	}
	t.Logf("%q is mastered on node %d (%s)", hot, victimNum, victim)
	if first >= 0 && victim != nodes[first].Name {
		t.Fatalf("%q is mastered on %s, not on %s whose hammer asked first", hot, victim, nodes[first].Name)
	}
	what := map[disruption]string{powerCut: "the kill", partition: "the cut"}[how]
	killedAt := history.Mono()
	if how == partition {
		if err := l.Partition(victim); err != nil {
			t.Fatal(err)
		}
	} else if err := l.Kill(ctxFor(t, time.Minute), victim); err != nil {
		t.Fatal(err)
	}
	killed := history.Mono()
	t.Logf("%s: %s (node %d, master of %q) mid-run", what, victim, victimNum, hot)

	var survivors []*hammerRun
	var dead *hammerRun
	for _, h := range runs {
		if h.node == victim {
			dead = h
		} else {
			survivors = append(survivors, h)
		}
	}
	// goOn waits until the survivors, each and together on hot, made
	// progress critical sections that began after from, and at least
	// minPhase passed.
	goOn := func(from int64, after string) {
		t.Helper()
		since := time.Now()
		hotAfter := func() int {
			n := 0
			for _, h := range survivors {
				n += h.countCS(from, hot)
			}
			return n
		}
		if !waitUntil(90*time.Second, func() bool {
			for _, h := range survivors {
				if h.countCS(from, "") < progress {
					return false
				}
			}
			return hotAfter() >= progress && time.Since(since) >= minPhase
		}) {
			for _, h := range survivors {
				t.Errorf("%s made %d critical sections after %s (want %d); stderr: %s", h.node, h.countCS(from, ""), after, progress, h.stderr.String())
			}
			t.Errorf("%d critical sections on %q after %s (want %d)", hotAfter(), hot, after, progress)
		}
	}
	goOn(killed, what)

	// Power the victim back on (or heal its link) while the survivors
	// hammer on: it rejoins with its number (a recovery under load too).
	restartAt := history.Mono()
	if how == partition {
		if err := l.Heal(victim); err != nil {
			t.Fatal(err)
		}
	} else if err := l.Start(ctxFor(t, 2*time.Minute), victim); err != nil {
		t.Fatal(err)
	}
	checkAllUp(t, l, 3)
	rejoined := history.Mono()
	if got := numbers(t, view(t, l, victim))[victim]; uint32(got) != victimNum {
		t.Errorf("%s came back as node %d, was %d", victim, got, victimNum)
	}
	t.Logf("%s is back (node %d) after %s", victim, victimNum, time.Duration(rejoined-killed).Round(time.Millisecond))
	goOn(rejoined, "the rejoin")

	// Stop: every hammer must finish on its own.
	stopped, stopAt := time.Now(), history.Mono()
	for _, h := range runs {
		_ = h.stdin.Close() // the victim's too, when it was only cut off
	}
	for _, h := range runs {
		select {
		case <-h.done:
		case <-time.After(time.Until(stopped.Add(60 * time.Second))):
			t.Errorf("%s: the hammer hangs: still running 60s after it was told to stop; stderr: %s", h.node, h.stderr.String())
			_ = h.cmd.Process.Kill()
		}
	}

	var all []history.Record
	for _, h := range runs {
		recs := h.snapshot()
		all = append(all, recs...)
		h.mu.Lock()
		startAt, garbage, herr, finished := h.startAt, h.garbage, h.err, h.finished
		h.mu.Unlock()
		if len(garbage) > 0 {
			t.Errorf("%s: %d lines of the hammer are not records, first %q", h.node, len(garbage), garbage[0])
		}
		var start *history.Record
		dones, cs := 0, 0
		for i, r := range recs {
			switch r.Kind {
			case history.KindStart:
				start = &recs[i]
			case history.KindDone:
				dones++
			case history.KindCS:
				cs++
			case history.KindError:
				if h != dead {
					t.Errorf("%s: client %d: %s: %s", h.node, r.ID.Client, r.Res, r.Msg)
				}
			}
		}
		// The checker compares times across nodes: the clock must be one.
		if start == nil || start.Mono < h.started || start.Mono > startAt {
			t.Fatalf("%s: the hammer's CLOCK_MONOTONIC is not the host's (start %+v, host between %d and %d): the interval check is void", h.node, start, h.started, startAt)
		}
		if h == dead {
			t.Logf("%s (%s): %d critical sections, the last %s %s", h.node, what, cs, lastBefore(recs, killedAt), what)
			if how == partition {
				// Cut off past its lease, its dlmd must have fenced and
				// ended its clients' sessions: each client's last record
				// is an error, and none made a critical section after the
				// heal that began before it rejoined.
				errs := 0
				for _, r := range recs {
					if r.Kind == history.KindError {
						errs++
						t.Logf("%s: client %d: %s: %s", h.node, r.ID.Client, r.Res, r.Msg)
					}
				}
				if errs == 0 {
					t.Errorf("%s was cut off for longer than its lease, yet none of its clients lost its session (did its dlmd fence?)", h.node)
				}
			}
			continue
		}
		if herr != nil || dones != clients {
			t.Errorf("%s: hammer exited with %v, %d of %d clients done; stderr: %s", h.node, herr, dones, clients, h.stderr.String())
		}
		t.Logf("%s: %d critical sections, %d after %s, %d after the rejoin; stopped %s after being told",
			h.node, cs, h.countCS(killed, ""), what, h.countCS(rejoined, ""), finished.Sub(stopped).Round(time.Millisecond))
	}

	bad, stats := history.Check(all, killedAt)
	names := make([]string, 0, len(stats))
	for name := range stats {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		st := stats[name]
		t.Logf("%s: %d critical sections, %d read a value block not valid (rebuilt from the log), counter at %d", name, st.Sections, st.Invalid, st.Last)
	}
	logInvalid(t, all, []phase{{what, killedAt}, {"the rejoin", rejoined}, {"the hammers were told to stop", stopAt}})
	var survived []history.Record
	for _, h := range survivors {
		survived = append(survived, h.snapshot()...)
	}
	if first := firstAfter(survived, hot, killed); first > 0 {
		t.Logf("first grant of %q to a survivor after %s: %s after it", hot, what, time.Duration(first-killedAt).Round(time.Millisecond))
		if last := lastEnd(dead.snapshot(), hot, first); last > 0 {
			t.Logf("%s's last critical section on %q ended %s after %s, %s before that grant", victim, hot,
				time.Duration(last-killedAt).Round(time.Millisecond), what, time.Duration(first-last).Round(time.Millisecond))
		}
	}
	if gap, at := longestPause(all, hot, restartAt); gap > 0 {
		t.Logf("longest pause between grants of %q after the restart began: %s, %s after it", hot,
			time.Duration(gap).Round(time.Millisecond), time.Duration(at-restartAt).Round(time.Millisecond))
	}
	for _, b := range bad {
		t.Error(b)
	}

	// The lab is whole again and every node can lock the hot resource.
	if err := l.WaitUnitsActive(ctxFor(t, time.Minute), victim, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if out, err := l.Exec(ctxFor(t, time.Minute), n.Name, "ssi", "lock", "--timeout", "30s", ls, hot, "--", "true"); err != nil {
			t.Errorf("%s: lock %q after %s came back: %v\n%s", n.Name, hot, victim, err, out)
		}
	}
}

// dlmMaster is the node that masters res in lockspace ls, read from `ssi
// locks LS` at node: its table has one row per lock, and the first row of
// each resource starts with the lockspace, the resource and its master.
func dlmMaster(t *testing.T, l *lab.Lab, node, ls, res string) uint32 {
	t.Helper()
	out, err := l.Exec(ctxFor(t, time.Minute), node, "ssi", "locks", ls)
	if err != nil {
		t.Fatalf("ssi locks %s at %s: %v\n%s", ls, node, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ls && f[1] == res {
			m, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil || m == 0 {
				t.Fatalf("ssi locks %s at %s: master %q of %s is not a node number:\n%s", ls, node, f[2], res, out)
			}
			return uint32(m)
		}
	}
	t.Fatalf("ssi locks %s at %s does not list %s:\n%s", ls, node, res, out)
	return 0
}

// lastBefore describes the last critical section in recs that began
// before t.
func lastBefore(recs []history.Record, t int64) string {
	var last *history.Record
	for i, r := range recs {
		if r.Kind == history.KindCS && r.T0 < t && (last == nil || r.T0 > last.T0) {
			last = &recs[i]
		}
	}
	if last == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s on %s, %s before", last.ID, last.Res, time.Duration(t-last.T0).Round(time.Microsecond))
}

// longestPause returns the longest time between the end of a critical
// section on res and the start of the next one, among those that began
// after from, and when that pause began.
func longestPause(recs []history.Record, res string, from int64) (gap, at int64) {
	var cs []history.Record
	for _, r := range recs {
		if r.Kind == history.KindCS && r.Res == res && r.T0 > from {
			cs = append(cs, r)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].T0 < cs[j].T0 })
	for i := 1; i < len(cs); i++ {
		if g := cs[i].T0 - cs[i-1].T1; g > gap {
			gap, at = g, cs[i-1].T1
		}
	}
	return gap, at
}

// phase is a moment of the run (CLOCK_MONOTONIC).
type phase struct {
	name string
	at   int64
}

// logInvalid lists the grants that read a value block marked not valid,
// with when they came (relative to the latest of phases, in order, before
// them).
func logInvalid(t *testing.T, recs []history.Record, phases []phase) {
	t.Helper()
	var inv []history.Record
	for _, r := range recs {
		if r.Kind == history.KindCS && !r.Valid {
			inv = append(inv, r)
		}
	}
	sort.Slice(inv, func(i, j int) bool { return inv[i].T0 < inv[j].T0 })
	for i, r := range inv {
		if i == 10 {
			t.Logf("... %d more", len(inv)-i)
			break
		}
		when := "before " + phases[0].name
		for _, p := range phases {
			if r.T0 > p.at {
				when = fmt.Sprintf("%s after %s", time.Duration(r.T0-p.at).Round(time.Millisecond), p.name)
			}
		}
		t.Logf("%s: %s read a value block not valid %s (it rebuilt %d)", r.Res, r.ID, when, r.Wrote)
	}
}

// firstAfter is the start of the first critical section on res after t,
// or 0.
// lastEnd returns the latest end of a critical section on res in recs
// that began before t (0: none).
func lastEnd(recs []history.Record, res string, t int64) int64 {
	var last int64
	for _, r := range recs {
		if r.Kind == history.KindCS && r.Res == res && r.T0 < t {
			last = max(last, r.T1)
		}
	}
	return last
}

func firstAfter(recs []history.Record, res string, t int64) int64 {
	var first int64
	for _, r := range recs {
		if r.Kind == history.KindCS && r.Res == res && r.T0 > t && (first == 0 || r.T0 < first) {
			first = r.T0
		}
	}
	return first
}
