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
// keeping its cpid; last, the target of a move is power-cut while it
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

func startCounter(t *testing.T, v vlab, node string, target int, args ...string) *counterExec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	argv := append([]string{"ssi", "exec", "--migratable", "-n", strconv.Itoa(target), "--", coopBin}, args...)
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
		_ = cmd.Process.Kill()
		<-c.done
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

// locate waits until ssi ps on node shows one process running coopBin
// with args (and no other) and returns its cpid and node.
func locate(t *testing.T, v vlab, node string, args ...string) (int64, uint32) {
	t.Helper()
	want := append([]string{coopBin}, args...)
	var rows []psRow
	if !waitUntil(30*time.Second, func() bool {
		rows = v.ps(t, node, want...)
		return len(rows) == 1
	}) {
		t.Fatalf("%s: ssi ps shows %d processes running %s, want 1: %+v", node, len(rows), strings.Join(want, " "), rows)
	}
	return rows[0].CPID, rows[0].Node
}

// copies counts the processes running coopBin on the nodes given.
func copies(t *testing.T, v vlab, nodes ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range nodes {
		o, _, _ := v.run(t, n, "pgrep", "-c", "-x", filepath.Base(coopBin))
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
	c := startCounter(t, v, "node1", v.num["node1"])
	cp, at := locate(t, v, "node1")
	if at != uint32(v.num["node1"]) {
		t.Fatalf("the counter runs on node %d, want node1's %d", at, v.num["node1"])
	}
	c.waitMore(t, 100, "before the moves")
	for _, to := range []string{"node2", "node3"} {
		t0 := time.Now()
		out := mustOn(t, v.l, time.Minute, "node1", "ssi", "migrate", strconv.FormatInt(cp, 10), strconv.Itoa(v.num[to]))
		t.Logf("ssi migrate %d %d (%s): %s in %s", cp, v.num[to], to, strings.TrimSpace(out), time.Since(t0).Round(time.Millisecond))
		got, gotAt := locate(t, v, "node1")
		if got != cp || gotAt != uint32(v.num[to]) {
			t.Fatalf("after the move to %s ssi ps shows cpid %d on node %d, want %d on %d", to, got, gotAt, cp, v.num[to])
		}
		c.waitMore(t, 100, "after the move to "+to)
	}
	if k := copies(t, v, "node1", "node2", "node3"); k["node1"]+k["node2"] != 0 || k["node3"] != 1 {
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

// testMigrateTargetKilled: node3 is power-cut while it restores a move
// of the counter from node 1 (the program takes 2 s to restore): the
// move fails and says so, the counter runs on at node 1 in exactly one
// copy with every number read once, and the exec goes on.
func testMigrateTargetKilled(t *testing.T, v vlab) {
	c := startCounter(t, v, "node1", v.num["node1"], "slowrestore")
	cp, _ := locate(t, v, "node1", "slowrestore")
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
	if !waitUntil(30*time.Second, func() bool { return copies(t, v, "node3")["node3"] == 1 }) {
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
	if k := copies(t, v, "node1", "node2"); k["node1"] != 1 || k["node2"] != 0 {
		t.Errorf("copies of the counter per node after the failed move: %v, want one on node1", k)
	}
	if got, at := locate(t, v, "node1", "slowrestore"); got != cp || at != uint32(v.num["node1"]) {
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
