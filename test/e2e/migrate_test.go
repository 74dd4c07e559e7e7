//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// coopBin is where the cooperative test program is installed in every
// node (a move starts the same executable on the target).
const coopBin = "/usr/local/bin/e2e-coopcounter"

// TestMigrate moves programs between the nodes of a 3-node lab of its
// own, whose nodes have CRIU (CRIU_BIN, make criu): CRIU works in the
// nodes as vprocd's children will use it; a cooperative program printing
// a counter moves node 1 -> 2 -> 3 with ssi migrate while the ssi exec
// that started it on node 1 reads one stream with no gap and no repeat,
// keeping its cpid; an unmodified shell loop does the same through CRIU;
// last, the target of a move is power-cut while it
// restores, and the program runs on at its source, in exactly one copy.
func TestMigrate(t *testing.T) {
	if criu == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CRIU_BIN is not set: make criu builds CRIU, make e2e passes it")
		}
		t.Log("CRIU_BIN is not set: the lab's nodes get no CRIU, CriuInNodes is skipped")
	}
	l := ownLabWith(t, "e2em", "10.77.17", 3, "openssi-vprocd", 100, criu)
	v := vlab{l: l, num: numbers(t, view(t, l, "node1"))}
	v.waitVprocds(t)
	bin := buildCoopCounter(t)
	for _, n := range []string{"node1", "node2", "node3"} {
		installFile(t, l, n, bin, coopBin)
	}
	for _, c := range []struct {
		name string
		f    func(*testing.T, vlab)
	}{
		{"CriuInNodes", testMigrateCriuInNodes},
		{"Cooperative", testMigrateCooperative},
		{"Criu", testMigrateCriu},
		{"Leveler", testMigrateLeveler},
		{"TargetKilled", testMigrateTargetKilled}, // last: node3 stays down
	} {
		t0 := time.Now()
		t.Run(c.name, func(t *testing.T) { c.f(t, v) })
		t.Logf("%s took %s", c.name, time.Since(t0).Round(100*time.Millisecond))
	}
}

// buildCoopCounter builds the cooperative test program of vprocd's
// migration tests (static) and returns the binary's path.
func buildCoopCounter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "coopcounter")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./daemons/vprocd/server/testdata/coopcounter")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build coopcounter: %v\n%s", err, out)
	}
	return bin
}

// testMigrateCriuInNodes: criu check passes in every node as a service
// of the node's systemd (confined as vprocd's children are), where
// nspawn's default confinement makes it fail (lab.Options.CRIU).
func testMigrateCriuInNodes(t *testing.T, v vlab) {
	if criu == "" {
		t.Skip("CRIU_BIN is not set")
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		o, e, code := v.run(t, n, "systemd-run", "--wait", "--pipe", "--quiet", "/usr/local/sbin/criu", "check")
		if code != 0 || !strings.Contains(o+e, "Looks good") {
			t.Errorf("%s: criu check: exit %d\n%s%s", n, code, o, e)
		}
		// vprocd found it at start, and ssi status says so.
		if o, _, _ := v.run(t, n, "ssi", "status"); !strings.Contains(o, "criu: ready: criu 4.2") {
			t.Errorf("%s: ssi status does not say vprocd's CRIU is ready:\n%s", n, o)
		}
	}
}

// counterExec is a migratable coopcounter started with ssi exec on a
// node, its output read as it comes.
type counterExec struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	nums []int
	bad  []string // lines that are not numbers
	done chan struct{}
	err  error // Wait's
}

func startCounter(t *testing.T, v vlab, node string, target int, prog ...string) *counterExec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	argv := append([]string{"ssi", "exec", "--migratable", "-n", strconv.Itoa(target), "--"}, prog...)
	cmd, err := v.l.Command(ctx, node, argv...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &counterExec{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			if n, err := strconv.Atoi(sc.Text()); err == nil {
				c.nums = append(c.nums, n)
			} else {
				c.bad = append(c.bad, sc.Text())
			}
			c.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		c.err = cmd.Wait()
		if stderr.Len() > 0 {
			t.Logf("%s: %s: stderr: %s", node, strings.Join(argv, " "), stderr.String())
		}
		close(c.done)
	}()
	t.Cleanup(func() {
		// nsenter forked ssi into the node: killing it may leave ssi
		// (and the output pipe) to the lab's teardown.
		_ = cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
	})
	return c
}

// last returns the number of lines read and the last number.
func (c *counterExec) last() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.nums) == 0 {
		return 0, 0
	}
	return len(c.nums), c.nums[len(c.nums)-1]
}

// waitMore waits until k more numbers than now were read.
func (c *counterExec) waitMore(t *testing.T, k int, what string) {
	t.Helper()
	n0, _ := c.last()
	if !waitUntil(time.Minute, func() bool { n, _ := c.last(); return n >= n0+k }) {
		n, last := c.last()
		t.Fatalf("%s: the counter stalled: %d numbers read (last %d), want %d more", what, n, last, k)
	}
}

// check fails t unless the numbers read are 1, 2, 3, ... with no gap
// and no repeat.
func (c *counterExec) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		t.Errorf("lines that are not the counter: %q", c.bad)
	}
	for i, n := range c.nums {
		if n != i+1 {
			t.Fatalf("the counter read %d where %d was due (after %v): a gap or a repeat", n, i+1, c.nums[max(0, i-3):i])
		}
	}
}

// locate waits until ssi ps on node shows one process running want (its
// whole command line) and returns its cpid and node.
func locate(t *testing.T, v vlab, node string, want ...string) (int64, uint32) {
	t.Helper()
	var rows []psRow
	if !waitUntil(30*time.Second, func() bool {
		rows = v.ps(t, node, want...)
		return len(rows) == 1
	}) {
		t.Fatalf("%s: ssi ps shows %d processes running %s, want 1: %+v", node, len(rows), strings.Join(want, " "), rows)
	}
	return rows[0].CPID, rows[0].Node
}

// copies counts the processes named name on the nodes given.
func copies(t *testing.T, v vlab, name string, nodes ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range nodes {
		o, _, _ := v.run(t, n, "pgrep", "-c", "-x", name)
		k, _ := strconv.Atoi(strings.TrimSpace(o))
		out[n] = k
	}
	return out
}

// testMigrateCooperative: the counter started on node 1 by ssi exec on
// node 1 moves to node 2, then to node 3; the exec reads every number
// once and in order, ssi ps finds it on its new node with the same cpid,
// and ssi kill ends it there with the exec's status 128+15.
func testMigrateCooperative(t *testing.T, v vlab) {
	c := startCounter(t, v, "node1", v.num["node1"], coopBin)
	cp, at := locate(t, v, "node1", coopBin)
	if at != uint32(v.num["node1"]) {
		t.Fatalf("the counter runs on node %d, want node1's %d", at, v.num["node1"])
	}
	moveAlong(t, v, c, cp, coopBin)
	// Another user may not move it: goto is its owner's (root's).
	o, code := runOn(t, v.l, time.Minute, "node1", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"bash", "-c", `echo "$1" > "/cluster/proc/$2/goto"`, "bash", strconv.Itoa(v.num["node2"]), strconv.FormatInt(cp, 10))
	if code == 0 || !strings.Contains(o, "Permission denied") {
		t.Errorf("nobody's echo to the goto of root's counter: exit %d: %s, want Permission denied", code, o)
	}
	if k := copies(t, v, filepath.Base(coopBin), "node1", "node2", "node3"); k["node1"]+k["node2"] != 0 || k["node3"] != 1 {
		t.Errorf("copies of the counter per node after the moves: %v, want one on node3", k)
	}
	mustOn(t, v.l, time.Minute, "node1", "ssi", "kill", strconv.FormatInt(cp, 10))
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ssi exec still runs 30 s after ssi kill of the moved counter")
	}
	if code := exitCode(c.err); code != 128+15 {
		t.Errorf("ssi exec of the moved counter: %v (exit %d), want 143 (SIGTERM)", c.err, code)
	}
	c.check(t)
	n, last := c.last()
	t.Logf("the counter read %d numbers, last %d, over two moves", n, last)
}

// moveAlong moves the counter c (cpid cp, command line prog) from node 1
// to node 2 with ssi migrate on node 1, then to node 3 by writing node
// 3's number to /cluster/proc/CPID/goto there, checking after each move
// that ssi ps shows it on its new node with the same cpid and that its
// output goes on.
func moveAlong(t *testing.T, v vlab, c *counterExec, cp int64, prog ...string) {
	t.Helper()
	c.waitMore(t, 100, "before the moves")
	x := strconv.FormatInt(cp, 10)
	for _, to := range []string{"node2", "node3"} {
		t0 := time.Now()
		move := []string{"ssi", "migrate", x, strconv.Itoa(v.num[to])}
		if to == "node3" {
			move = []string{"bash", "-c", `echo "$1" > "/cluster/proc/$2/goto"`, "bash", strconv.Itoa(v.num[to]), x}
		}
		out := mustOn(t, v.l, time.Minute, "node1", move...)
		t.Logf("%s (%s): %s in %s", strings.Join(move, " "), to, strings.TrimSpace(out), time.Since(t0).Round(time.Millisecond))
		got, gotAt := locate(t, v, "node1", prog...)
		if got != cp || gotAt != uint32(v.num[to]) {
			t.Fatalf("after the move to %s ssi ps shows cpid %d on node %d, want %d on %d", to, got, gotAt, cp, v.num[to])
		}
		c.waitMore(t, 100, "after the move to "+to)
	}
	if o := mustOn(t, v.l, time.Minute, "node1", "cat", "/cluster/proc/"+x+"/node"); strings.TrimSpace(o) != strconv.Itoa(v.num["node3"]) {
		t.Errorf("/cluster/proc/%s/node says %q after the moves, want node3's %d", x, o, v.num["node3"])
	}
}

// shellCounter is an unmodified program printing a counter: it moves
// through CRIU.
var shellCounter = []string{"sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.005; done"}

// testMigrateCriu: an unmodified shell loop printing a counter, started
// on node 1 by ssi exec on node 1, moves to node 2 then node 3 through
// CRIU (ssi ps -o migrate says so); the exec reads every number once and
// in order, its cpid stays, and ssi kill ends it there.
func testMigrateCriu(t *testing.T, v vlab) {
	if criu == "" {
		t.Skip("CRIU_BIN is not set")
	}
	c := startCounter(t, v, "node1", v.num["node1"], shellCounter...)
	cp, _ := locate(t, v, "node1", shellCounter...)
	if !waitUntil(30*time.Second, func() bool {
		o, _, _ := v.run(t, "node1", "ssi", "ps", "-o", "migrate", "-p", strconv.FormatInt(cp, 10))
		return strings.Contains(o, "criu")
	}) {
		o, e, _ := v.run(t, "node1", "ssi", "ps", "-o", "migrate", "-p", strconv.FormatInt(cp, 10))
		t.Fatalf("ssi ps -o migrate does not say the shell loop moves through CRIU:\n%s%s", o, e)
	}
	moveAlong(t, v, c, cp, shellCounter...)
	mustOn(t, v.l, time.Minute, "node1", "ssi", "kill", "-s", "KILL", strconv.FormatInt(cp, 10))
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ssi exec still runs 30 s after ssi kill of the moved shell loop")
	}
	if code := exitCode(c.err); code != 128+9 {
		t.Errorf("ssi exec of the moved shell loop: %v (exit %d), want 137 (SIGKILL)", c.err, code)
	}
	c.check(t)
	n, last := c.last()
	t.Logf("the shell loop's counter read %d numbers, last %d, over two CRIU moves", n, last)
}

// spinBin is a copy of dash under a name of its own, registered for load
// leveling: an unmodified CPU-bound program CRIU moves.
const spinBin = "/usr/local/bin/e2e-spin"

// testMigrateLeveler: six CPU-bound programs of a registered name,
// started migratable on node 1, are spread to two per node by the load
// leveler within 30 s, in the minimum of 4 moves, and stay put for the
// rest of a 2-minute run.
func testMigrateLeveler(t *testing.T, v vlab) {
	// In this lab (three nodes on two shared cores) each node's daemons
	// add 0.3 to 0.85 of a task to its run queue, more on a busy machine.
	// Rounded, that came and went as a whole task, and one run of four
	// under CI made a fifth move; the leveler compares the unrounded
	// averages now (load.Vector.RunQueueAvg).
	if criu == "" {
		t.Skip("CRIU_BIN is not set: the spinning programs move through CRIU")
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		mustOn(t, v.l, time.Minute, n, "cp", "/bin/dash", spinBin)
	}
	mustOn(t, v.l, time.Minute, "node1", "ssi", "loadlevel", "add", filepath.Base(spinBin))
	defer mustOn(t, v.l, time.Minute, "node1", "ssi", "loadlevel", "remove", filepath.Base(spinBin))
	prog := []string{spinBin, "-c", "while :; do :; done"}
	for range 6 {
		startCounter(t, v, "node1", v.num["node1"], prog...) // no output: attached, as the leveler wants
	}
	start := time.Now()
	where := func() map[int64]uint32 {
		out := map[int64]uint32{}
		for _, r := range v.ps(t, "node1", prog...) {
			if r.CPID>>22 == int64(v.num["node1"]) { // started there (cpid: node<<22 | pid)
				out[r.CPID] = r.Node
			}
		}
		return out
	}
	perNode := func(w map[int64]uint32) map[uint32]int {
		c := map[uint32]int{}
		for _, n := range w {
			c[n]++
		}
		return c
	}
	balanced := func(w map[int64]uint32) bool {
		c := perNode(w)
		return len(w) == 6 && c[uint32(v.num["node1"])] == 2 && c[uint32(v.num["node2"])] == 2 && c[uint32(v.num["node3"])] == 2
	}
	// Every program started on node 1: a move the leveler made before
	// the first poll saw all six counts from there (a program moves at
	// most once within its 20 s cool-down, longer than a poll).
	last := map[int64]uint32{}
	moves := 0
	if !waitUntil(30*time.Second, func() bool {
		w := where()
		for x, n := range w {
			p, ok := last[x]
			if !ok {
				p = uint32(v.num["node1"])
			}
			if p != n {
				moves++
			}
			last[x] = n
		}
		return balanced(w)
	}) {
		o, _, _ := v.run(t, "node1", "ssi", "loadlevel", "status")
		t.Fatalf("not spread to 2/2/2 within 30 s: %v per node\n%s", perNode(where()), o)
	}
	spread := time.Since(start)
	settled := last
	for time.Since(start) < 2*time.Minute {
		time.Sleep(5 * time.Second)
		w := where()
		for x, n := range w {
			if settled[x] != n {
				o, _, _ := v.run(t, "node1", "ssi", "loadlevel", "status")
				t.Fatalf("%s after the start, cpid %d moved from node %d to %d after the spread\n%s", time.Since(start).Round(time.Second), x, settled[x], n, o)
			}
		}
		if len(w) != 6 {
			t.Fatalf("%d of the six programs left after %s: %v", len(w), time.Since(start).Round(time.Second), w)
		}
	}
	o, _, _ := v.run(t, "node1", "ssi", "loadlevel", "status")
	t.Logf("6/0/0 to 2/2/2 in %s, %d moves seen; no move for the rest of 2 minutes\n%s", spread.Round(100*time.Millisecond), moves, o)
	if moves != 4 {
		t.Errorf("%d moves seen, want the minimum, 4", moves)
	}
	for x := range settled {
		mustOn(t, v.l, time.Minute, "node1", "ssi", "kill", "-s", "KILL", strconv.FormatInt(x, 10))
	}
}

// testMigrateTargetKilled: node3 is power-cut while it restores a move
// of the counter from node 1 (the program takes 2 s to restore): the
// move fails and says so, the counter runs on at node 1 in exactly one
// copy with every number read once, and the exec goes on.
func testMigrateTargetKilled(t *testing.T, v vlab) {
	c := startCounter(t, v, "node1", v.num["node1"], coopBin, "slowrestore")
	cp, _ := locate(t, v, "node1", coopBin, "slowrestore")
	c.waitMore(t, 50, "before the move")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mig, err := v.l.Command(ctx, "node1", "ssi", "migrate", strconv.FormatInt(cp, 10), strconv.Itoa(v.num["node3"]))
	if err != nil {
		t.Fatal(err)
	}
	var migOut strings.Builder
	mig.Stdout, mig.Stderr = &migOut, &migOut
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	migDone := make(chan error, 1)
	go func() { migDone <- mig.Wait() }()
	// The copy restoring at node3.
	if !waitUntil(30*time.Second, func() bool { return copies(t, v, filepath.Base(coopBin), "node3")["node3"] == 1 }) {
		t.Fatal("no copy of the counter appeared at node3 during the move")
	}
	t0 := time.Now()
	if err := v.l.Kill(ctxFor(t, time.Minute), "node3"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-migDone:
		code := exitCode(err)
		t.Logf("ssi migrate ended %s after node3's power cut: exit %d: %s", time.Since(t0).Round(time.Millisecond), code, strings.TrimSpace(migOut.String()))
		if code == 0 {
			t.Fatalf("ssi migrate to a node killed during the move succeeded: %s", migOut.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("ssi migrate still runs 90 s after its target's power cut: %s", migOut.String())
	}
	c.waitMore(t, 50, "after the failed move")
	if k := copies(t, v, filepath.Base(coopBin), "node1", "node2"); k["node1"] != 1 || k["node2"] != 0 {
		t.Errorf("copies of the counter per node after the failed move: %v, want one on node1", k)
	}
	if got, at := locate(t, v, "node1", coopBin, "slowrestore"); got != cp || at != uint32(v.num["node1"]) {
		t.Errorf("after the failed move ssi ps shows cpid %d on node %d, want %d on %d", got, at, cp, v.num["node1"])
	}
	mustOn(t, v.l, time.Minute, "node1", "ssi", "kill", strconv.FormatInt(cp, 10))
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ssi exec still runs 30 s after ssi kill")
	}
	c.check(t)
}

// exitCode is the exit status of a command's Wait error (0 for nil, -1
// when it did not exit by itself).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
