package server

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/internal/criu"
	"github.com/openssi/openssi/internal/roottest"
)

// shellCounter is an unmodified program: a shell loop that counts on its
// stdout.
const shellCounter = `i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done`

// criuForTest is the CRIU of CRIU_BIN, ready; the test is skipped without
// CRIU_BIN (make criu builds the pinned one), but fails in CI.
func criuForTest(t *testing.T) criu.State {
	t.Helper()
	roottest.Need(t, "sh")
	bin := os.Getenv(criu.BinEnv)
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set in CI (make criu builds the pinned CRIU)", criu.BinEnv)
		}
		t.Skipf("skipped: %s is not set (make criu builds the pinned CRIU; make integration sets %s to it)", criu.BinEnv, criu.BinEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := criu.Detect(ctx, criu.Exec{}, bin)
	if st.Status != criu.Ready {
		t.Fatalf("CRIU at %s is not ready: %v", bin, st)
	}
	// CRIU refuses to dump a process holding a descriptor this test
	// inherited (CI runs it under flock): the programs must not inherit
	// them.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
	return st
}

// gapReader measures the longest wait between two reads that returned
// data: the output's pause while the program was frozen.
type gapReader struct {
	r    io.Reader
	mu   sync.Mutex
	last time.Time
	max  time.Duration
}

func (g *gapReader) Read(b []byte) (int, error) {
	n, err := g.r.Read(b)
	if n > 0 {
		g.mu.Lock()
		now := time.Now()
		if !g.last.IsZero() && now.Sub(g.last) > g.max {
			g.max = now.Sub(g.last)
		}
		g.last = now
		g.mu.Unlock()
	}
	return n, err
}

// reset forgets the gaps seen so far.
func (g *gapReader) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.max = 0
}

func (g *gapReader) longest() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max
}

// migrateColumn is what ps on node n says of how x would move.
func migrateColumn(t *testing.T, c *testCluster, n uint32, x int64) string {
	t.Helper()
	table, err := c.client(n).Ps(context.Background(), vproc.PsFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range table.Rows() {
		if int64(r.CPID) == x {
			return r.Migrate
		}
	}
	return "(not listed)"
}

// criuColumn is node 1's ps -o migrate of x once it says criu, or what it
// says after 5 s: the counter's sleep holds a file open for an instant
// while it starts (its loader's), and CRIU cannot move it that instant.
func criuColumn(t *testing.T, c *testCluster, x int64) string {
	t.Helper()
	col := migrateColumn(t, c, 1, x)
	for deadline := time.Now().Add(5 * time.Second); col != "criu" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		col = migrateColumn(t, c, 1, x)
	}
	return col
}

// TestMigrateCRIU runs the shell counter on node 2 from node 1's client
// and moves it 2 -> 3 through CRIU: the client reads one stream (no gap,
// no repeat), the cpid stays, ps says how it moves, and its exit status
// after a kill reaches the client. A program CRIU cannot move is refused
// with the reason and runs on.
func TestMigrateCRIU(t *testing.T) {
	st := criuForTest(t)
	coopDir := t.TempDir()
	c := startClusterWith(t, 3, Config{CoopDir: coopDir, Migrate: MigrateConfig{CRIU: st}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outR, outW := io.Pipe()
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"sh", "-c", shellCounter}, Migratable: true, Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan vproc.ExitStatus, 1)
	go func() {
		st, err := p.Wait()
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		outW.Close()
		waited <- st
	}()
	gaps := &gapReader{r: outR}
	out := readCounter(t, gaps)
	out.upTo(10)
	if got := criuColumn(t, c, p.Cpid); got != "criu" {
		t.Errorf("ps -o migrate says %q, want criu", got)
	}
	_, pid2 := runsOn(c, p.Cpid)
	// To node 3, and back from its PID namespace there.
	for _, to := range []uint32{3, 2} {
		gaps.reset()
		begin := time.Now()
		if err := c.client(1).Migrate(ctx, p.Cpid, int(to)); err != nil {
			t.Fatalf("migrate to %d: %v", to, err)
		}
		took := time.Since(begin)
		n, pid := runsOn(c, p.Cpid)
		for end := time.Now().Add(5 * time.Second); n != to && time.Now().Before(end); n, pid = runsOn(c, p.Cpid) {
			time.Sleep(5 * time.Millisecond)
		}
		if n != to || pid == pid2 {
			t.Fatalf("after the move cpid %d runs on node %d (pid %d), want node %d", p.Cpid, n, pid, to)
		}
		// CRIU restored it with its own pid, in a PID namespace of its own.
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/status"); err != nil ||
			!strings.Contains(string(b), "NSpid:\t"+strconv.Itoa(int(pid))+"\t"+strconv.Itoa(int(pid2))+"\n") {
			t.Errorf("the copy (pid %d) is not the original (pid %d) restored in a PID namespace: %v\n%s", pid, pid2, err, b)
		}
		out.upTo(out.last + 20)
		// The longest pause of its output (a line each 50 ms) is about
		// the time it was frozen: stopped at the source to running at
		// the target, as its reader sees it.
		t.Logf("moved to node %d: ssi migrate took %v; freeze time (the output's longest pause) %v",
			to, took.Round(time.Millisecond), gaps.longest().Round(time.Millisecond))
		if got := criuColumn(t, c, p.Cpid); got != "criu" {
			t.Errorf("after the move ps -o migrate says %q, want criu", got)
		}
	}
	// The images went through vprocd's runtime directory (/run, a tmpfs),
	// and none is left there.
	if ents, err := os.ReadDir(filepath.Join(coopDir, "images")); err != nil || len(ents) != 0 {
		t.Errorf("the images' directory after the moves: %v, %v; want it there and empty", ents, err)
	}

	// A program CRIU cannot move: it holds a file open.
	file := filepath.Join(t.TempDir(), "held")
	q, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"sh", "-c", `exec 3>"$0"; while :; do sleep 0.05; done`, file}, Migratable: true})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	col := migrateColumn(t, c, 1, q.Cpid)
	for !strings.Contains(col, "has a file open") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		col = migrateColumn(t, c, 1, q.Cpid)
	}
	// ssi ps, which every user reads, says what but not which file (its
	// owner's to know); ssi migrate says which.
	if !strings.HasPrefix(col, "no: ") || !strings.Contains(col, "has a file open") || strings.Contains(col, file) {
		t.Errorf("ps -o migrate of a program with a file open says %q, want the obstacle without the file's path", col)
	}
	err = c.client(1).Migrate(ctx, q.Cpid, 3)
	if !errors.Is(err, vproc.ErrNotMigratable) || !strings.Contains(err.Error(), file) || strings.Contains(err.Error(), "\n") {
		t.Errorf("moving a program with a file open: %v, want ErrNotMigratable naming the file in one line", err)
	}
	t.Logf("refused: %v", err)
	if n, _ := runsOn(c, q.Cpid); n != 2 {
		t.Errorf("after the refusal it runs on node %d, want 2", n)
	}
	if err := c.client(1).Kill(ctx, q.Cpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st, err := q.Wait(); err != nil || st.Signal != int(syscall.SIGKILL) {
		t.Errorf("the refused program's status %+v, %v; want SIGKILL", st, err)
	}

	// ssi kill where it went: its status reaches the client.
	if err := c.client(1).Kill(ctx, p.Cpid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill after the move: %v", err)
	}
	go out.rest()
	select {
	case st := <-waited:
		if st.Signal != int(syscall.SIGKILL) {
			t.Errorf("exit status %+v, want SIGKILL", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the exec did not end")
	}
	t.Logf("counted to %d", out.last)
	if ents, _ := os.ReadDir(filepath.Join(coopDir, "held")); len(ents) != 0 {
		t.Errorf("marks of held programs left: %v", ents)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "openssi-criu-*")); len(left) != 0 {
		t.Errorf("image directories left: %v", left)
	}
}

// TestMigrateCRIUFails: a move whose restore fails (the target has no
// usable CRIU) leaves the program running where it was, thawed, its
// counter going on without a gap, and says why in one line.
func TestMigrateCRIUFails(t *testing.T) {
	st := criuForTest(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir(), Migrate: MigrateConfig{CRIU: st}})
	c.node(3).srv.cfg.Migrate.CRIU = criu.State{Status: criu.Missing, Reason: "no criu on PATH"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, "sh", "-c", shellCounter)
	out.upTo(10)
	_, pid := runsOn(c, p.Cpid)
	err := c.client(1).Migrate(ctx, p.Cpid, 3)
	if !errors.Is(err, vproc.ErrMoveFailed) || !strings.Contains(err.Error(), "CRIU on node 3 is missing: no criu on PATH") || strings.Contains(err.Error(), "\n") {
		t.Errorf("%v, want ErrMoveFailed saying CRIU on node 3 is missing, in one line", err)
	}
	t.Logf("failed: %v", err)
	out.upTo(out.last + 20)
	if n, pidNow := runsOn(c, p.Cpid); n != 2 || pidNow != pid {
		t.Errorf("after the failed move it runs on node %d (pid %d), want node 2 (pid %d)", n, pidNow, pid)
	}
	if err := c.client(1).Kill(ctx, p.Cpid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go out.rest()
	st2, err := p.Wait()
	outW.Close()
	if err != nil || st2.Signal != int(syscall.SIGTERM) {
		t.Errorf("status %+v, %v; want SIGTERM", st2, err)
	}
}

// TestMigrateCRIUStdin: a shell that echoes its stdin moves through CRIU
// while it waits for a line; the lines after the move reach the copy, and
// the end of stdin ends it with its status.
func TestMigrateCRIUStdin(t *testing.T) {
	st := criuForTest(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir(), Migrate: MigrateConfig{CRIU: st}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, "sh", "-c", `while read l; do echo "$l"; done; exit 3`)
	if _, err := io.WriteString(p.Stdin, "1\n"); err != nil {
		t.Fatal(err)
	}
	out.upTo(1)
	if err := c.client(1).Migrate(ctx, p.Cpid, 3); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for i := 2; i <= 5; i++ {
		if _, err := io.WriteString(p.Stdin, strconv.Itoa(i)+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	out.upTo(5)
	if n, _ := runsOn(c, p.Cpid); n != 3 {
		t.Errorf("it runs on node %d, want 3", n)
	}
	if err := p.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	go out.rest()
	st2, err := p.Wait()
	outW.Close()
	if err != nil || st2.Code != 3 {
		t.Errorf("status %+v, %v; want 3", st2, err)
	}
}
