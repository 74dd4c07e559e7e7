package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
)

// buildCounter builds testdata/coopcounter, the cooperative test program.
func buildCounter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "coopcounter")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/coopcounter").CombinedOutput()
	if err != nil {
		t.Fatalf("build coopcounter: %v\n%s", err, out)
	}
	return bin
}

// counterReader checks the counter a coopcounter prints: every number
// once, in order, from 1; other lines are kept.
type counterReader struct {
	t     *testing.T
	lines chan string
	last  int
	other []string
}

func readCounter(t *testing.T, r io.Reader) *counterReader {
	c := &counterReader{t: t, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// upTo reads until the counter reached n (or the output ended).
func (c *counterReader) upTo(n int) {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for c.last < n {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return
			}
			c.line(l)
		case <-timeout:
			c.t.Fatalf("the counter stopped at %d, before %d", c.last, n)
		}
	}
}

// rest reads to the end of the output.
func (c *counterReader) rest() {
	for l := range c.lines {
		c.line(l)
	}
}

func (c *counterReader) line(l string) {
	c.t.Helper()
	v, err := strconv.Atoi(l)
	if err != nil {
		c.other = append(c.other, l)
		return
	}
	if v != c.last+1 {
		c.t.Fatalf("the counter went from %d to %d", c.last, v)
	}
	c.last = v
}

// execCounter starts args migratable on node on from node 1's client
// and reads its output as a counter; the caller closes outW once the
// exec ended.
func execCounter(ctx context.Context, t *testing.T, c *testCluster, on int, args ...string) (*vproc.Process, *counterReader, *io.PipeWriter) {
	t.Helper()
	outR, outW := io.Pipe()
	p, err := c.client(1).Exec(ctx, on, vproc.Cmd{Args: args, Migratable: true, Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	return p, readCounter(t, outR), outW
}

// exitCounter ends the coopcounter p with status code ("exit N" on its
// stdin), reads the rest of its output out, closes outW and checks the
// exec's status.
func exitCounter(t *testing.T, p *vproc.Process, out *counterReader, outW io.Closer, code int) {
	t.Helper()
	if _, err := fmt.Fprintf(p.Stdin, "exit %d\n", code); err != nil {
		t.Fatal(err)
	}
	go out.rest()
	st, err := p.Wait()
	outW.Close()
	if err != nil || st.Code != code {
		t.Errorf("status %+v, %v; want %d", st, err, code)
	}
}

// runsOn is the node whose vprocd runs x and its pid there (0: none;
// 99: more than one).
func runsOn(c *testCluster, x int64) (node uint32, pid int32) {
	for n := uint32(1); n <= 3; n++ {
		if p, ok := c.node(n).srv.record(cpid.CPID(x)); ok {
			if node != 0 {
				return 99, 0
			}
			node, pid = n, p
		}
	}
	return node, pid
}

// TestMigrateCooperative runs the cooperative counter on node 2 from node
// 1's client and moves it 2 -> 3 -> 2: the client reads one stream (no
// gap, no repeat), the cpid stays, its stdin reaches the copy, ps and
// kill find it where it runs, and its exit status reaches the client.
// Refused moves leave it running.
func TestMigrateCooperative(t *testing.T) {
	bin := buildCounter(t)
	coopDir := t.TempDir()
	c := startClusterWith(t, 3, Config{CoopDir: coopDir})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, bin)
	waited := make(chan vproc.ExitStatus, 1)
	go func() {
		st, err := p.Wait()
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		outW.Close()
		waited <- st
	}()
	out.upTo(20)
	if n, _ := runsOn(c, p.Cpid); n != 2 {
		t.Fatalf("cpid %d runs on node %d, want 2", p.Cpid, n)
	}

	// Refused: not its owner; to a node that is not up; to where it is.
	if _, err := c.node(1).srv.migrateTo(ctx, 4242, cpid.CPID(p.Cpid), 3, false); err == nil || !strings.Contains(err.Error(), "may not move") {
		t.Errorf("a move by another uid: %v", err)
	}
	if err := c.client(1).Migrate(ctx, p.Cpid, 9); !errors.Is(err, vproc.ErrNotMigratable) {
		t.Errorf("a move to a node that is not up: %v", err)
	}
	if err := c.client(1).Migrate(ctx, p.Cpid, 2); !errors.Is(err, vproc.ErrNotMigratable) {
		t.Errorf("a move to where it runs: %v", err)
	}
	out.upTo(out.last + 10)

	// Its priority moves with it.
	if _, err := c.client(1).Renice(ctx, p.Cpid, 5); err != nil {
		t.Fatal(err)
	}
	pid2 := func() int32 { _, pid := runsOn(c, p.Cpid); return pid }()
	for _, to := range []int{3, 2} {
		begin := time.Now()
		if err := c.client(1).Migrate(ctx, p.Cpid, to); err != nil {
			t.Fatalf("migrate to %d: %v", to, err)
		}
		t.Logf("moved to node %d in %v at %d", to, time.Since(begin), out.last)
		// The answer comes at the commit: the old copy is killed
		// and the new one resumed a moment later.
		n, pid := runsOn(c, p.Cpid)
		for end := time.Now().Add(5 * time.Second); n != uint32(to) && time.Now().Before(end); n, pid = runsOn(c, p.Cpid) {
			time.Sleep(5 * time.Millisecond)
		}
		if n != uint32(to) || pid == pid2 {
			t.Fatalf("after the move cpid %d runs on node %d (pid %d), want node %d", p.Cpid, n, pid, to)
		}
		if st, err := readProc(pid); err != nil || st.nice != 5 {
			t.Errorf("after the move to %d its nice value is %d (%v), want 5", to, st.nice, err)
		}
		at := out.last
		out.upTo(at + 30)
	}
	// ps on node 1 shows it on node 2 again, under its cpid.
	table, err := c.client(1).Ps(ctx, vproc.PsFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var on []uint32
	for _, r := range table.Rows() {
		if int64(r.CPID) == p.Cpid {
			on = append(on, r.Node)
		}
	}
	if len(on) != 1 || on[0] != 2 {
		t.Errorf("ps shows cpid %d on nodes %v, want [2]", p.Cpid, on)
	}
	// Its stdin reaches the copy: it echoes, then ends with 7.
	if _, err := io.WriteString(p.Stdin, "hello\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(out.other) == 0 && time.Now().Before(deadline) {
		out.upTo(out.last + 1)
	}
	if len(out.other) != 1 || out.other[0] != "echo: hello" {
		t.Errorf("the copy's echo of its stdin: %q", out.other)
	}
	if _, err := io.WriteString(p.Stdin, "exit 7\n"); err != nil {
		t.Fatal(err)
	}
	out.rest()
	select {
	case st := <-waited:
		if st.Code != 7 {
			t.Errorf("exit status %+v, want 7", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the exec did not end")
	}
	t.Logf("counted to %d", out.last)
	// Nothing is held for a move any more; no socket is left.
	if ents, _ := os.ReadDir(filepath.Join(coopDir, "held")); len(ents) != 0 {
		t.Errorf("marks of held programs left: %v", ents)
	}
	if ents, _ := filepath.Glob(filepath.Join(coopDir, "p*")); len(ents) != 0 {
		t.Errorf("checkpoint sockets left: %v", ents)
	}
}

// TestMigrateKill moves the counter and kills it where it went by its
// cpid: the client gets its signal's status.
func TestMigrateKill(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, bin)
	out.upTo(10)
	if err := c.client(1).Migrate(ctx, p.Cpid, 3); err != nil {
		t.Fatal(err)
	}
	out.upTo(out.last + 10)
	if err := c.client(1).Kill(ctx, p.Cpid, syscall.SIGTERM); err != nil {
		t.Fatalf("kill after the move: %v", err)
	}
	go func() { out.rest() }()
	st, err := p.Wait()
	outW.Close()
	if err != nil || st.Signal != int(syscall.SIGTERM) {
		t.Errorf("status %+v, %v; want SIGTERM", st, err)
	}
}

// TestMigrateRefused: a program not started migratable, or one that never
// connects to its checkpoint socket, cannot move, and runs on.
func TestMigrateRefused(t *testing.T) {
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, migratable := range []bool{false, true} {
		p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"sleep", "30"}, Migratable: migratable})
		if err != nil {
			t.Fatal(err)
		}
		err = c.client(1).Migrate(ctx, p.Cpid, 3)
		if !errors.Is(err, vproc.ErrNotMigratable) || strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("migratable %v: %v, want ErrNotMigratable in one line", migratable, err)
		}
		t.Logf("migratable %v: %v", migratable, err)
		if n, _ := runsOn(c, p.Cpid); n != 2 {
			t.Errorf("migratable %v: after the refusal it runs on node %d", migratable, n)
		}
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_, _ = p.Wait()
	}
}

// TestMigrateFails: a move whose checkpoint or restore fails, or whose
// state is over the limit, leaves the
// program running where it was, its counter going on without a gap,
// and says why in one line.
func TestMigrateFails(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir(), Migrate: MigrateConfig{StateLimit: 4096}})
	for _, tc := range []struct{ arg, says string }{
		{"nocheckpoint", "could not checkpoint: not now"},
		{"norestore", "could not restore its state: cannot take that state"},
		{"bigstate", "over vprocd.migrate.coop_state_limit: 50"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		p, out, outW := execCounter(ctx, t, c, 2, bin, tc.arg)
		out.upTo(10)
		err := c.client(1).Migrate(ctx, p.Cpid, 3)
		if !errors.Is(err, vproc.ErrMoveFailed) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want ErrMoveFailed saying %q in one line", tc.arg, err, tc.says)
		}
		t.Logf("%s: %v", tc.arg, err)
		if n, _ := runsOn(c, p.Cpid); n != 2 {
			t.Errorf("%s: after the failed move it runs on node %d", tc.arg, n)
		}
		out.upTo(out.last + 20)
		exitCounter(t, p, out, outW, 3)
		cancel()
	}
}

// TestMigrateFromTheCallersNode moves a program started on the caller's
// own node away and back: its relay is there, through the peer service.
func TestMigrateFromTheCallersNode(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 2, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 1, bin)
	out.upTo(10)
	for _, to := range []int{2, 1} {
		if err := c.client(1).Migrate(ctx, p.Cpid, to); err != nil {
			t.Fatalf("migrate to %d: %v", to, err)
		}
		out.upTo(out.last + 20)
	}
	exitCounter(t, p, out, outW, 5)
}

// TestMigrateStdin writes lines to the counter's stdin without pause
// while it moves 2 -> 3 -> 2 -> 3: it echoes every line once, in order
// (the lines its old copy had not taken are sent to the new one again),
// and its counter has no gap.
func TestMigrateStdin(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, bin)
	out.upTo(5)
	stop := make(chan struct{})
	wrote := make(chan int, 1)
	go func() {
		i := 0
		defer func() { wrote <- i }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			i++
			if _, err := io.WriteString(p.Stdin, "l"+strconv.Itoa(i)+"\n"); err != nil {
				t.Errorf("write stdin: %v", err)
				return
			}
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for _, to := range []int{3, 2, 3} {
		out.upTo(out.last + 15)
		if err := c.client(1).Migrate(ctx, p.Cpid, to); err != nil {
			t.Fatalf("migrate to %d: %v", to, err)
		}
	}
	out.upTo(out.last + 15)
	close(stop)
	n := <-wrote
	if _, err := io.WriteString(p.Stdin, "exit 4\n"); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() { out.rest(); close(read) }()
	st, err := p.Wait()
	outW.Close()
	if err != nil || st.Code != 4 {
		t.Errorf("status %+v, %v; want 4", st, err)
	}
	<-read
	echoed := 0
	for _, l := range out.other {
		want := "echo: l" + strconv.Itoa(echoed+1)
		if l != want {
			t.Fatalf("after %d lines echoed %q, want %q", echoed, l, want)
		}
		echoed++
	}
	if echoed != n {
		t.Errorf("echoed %d lines of %d", echoed, n)
	}
	t.Logf("%d lines through 3 moves, counter at %d", n, out.last)
}

// TestMigrateView: clmsd's view at start gives every node at one epoch;
// the move protocol's core must see them all UP.
func TestMigrateView(t *testing.T) {
	s := New(Config{Node: 1})
	defer s.Close()
	for n := uint32(1); n <= 3; n++ {
		s.MembershipAt(7, n, true)
	}
	var err error
	s.migStep(func(n *migrate.Node, now time.Time) {
		_, err = n.Migrate(now, uint64(cpid.MustMake(1, 5)), 1, 3, migrate.Cooperative)
	})
	if err != nil {
		t.Fatalf("a move to node 3 after the view at start: %v", err)
	}
	s.MembershipAt(8, 3, false)
	s.migStep(func(n *migrate.Node, now time.Time) {
		_, err = n.Migrate(now, uint64(cpid.MustMake(1, 6)), 1, 3, migrate.Cooperative)
	})
	if !errors.Is(err, migrate.ErrTargetDown) {
		t.Fatalf("a move to node 3 DOWN: %v", err)
	}
}

// TestMigrateTargetDown: the target goes DOWN while it restores: the
// move aborts, the program runs on at the source without a gap, and the
// target, alive all along, drops its copy once it hears the decision.
func TestMigrateTargetDown(t *testing.T) {
	bin := buildCounter(t)
	coopDir := t.TempDir()
	c := startClusterWith(t, 3, Config{CoopDir: coopDir})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, bin, "slowrestore")
	out.upTo(10)
	moved := make(chan error, 1)
	go func() { moved <- c.client(1).Migrate(ctx, p.Cpid, 3) }()
	// Node 3 restores (2s): nodes 1 and 2 see it go DOWN.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.node(3).srv.mig.mu.Lock()
		restoring := len(c.node(3).srv.mig.images) > 0 || len(c.node(3).srv.mig.node.Moves()) > 0
		c.node(3).srv.mig.mu.Unlock()
		if restoring || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, n := range []uint32{1, 2} {
		c.node(n).srv.Membership(3, false)
	}
	err := <-moved
	if !errors.Is(err, vproc.ErrMoveFailed) || !strings.Contains(err.Error(), "went down") {
		t.Errorf("the move: %v, want ErrMoveFailed: the target went down", err)
	}
	t.Logf("the move: %v", err)
	out.upTo(out.last + 30)
	if n, _ := runsOn(c, p.Cpid); n != 2 {
		t.Errorf("after the failed move it runs on node %d, want 2", n)
	}
	// Node 3 was alive: once it is UP again in their view, it hears
	// the decision it asks for, and drops its copy.
	for _, n := range []uint32{1, 2} {
		c.node(n).srv.Membership(3, true)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c.node(3).srv.mig.mu.Lock()
		left := len(c.node(3).srv.mig.copies) + len(c.node(3).srv.mig.node.Moves())
		c.node(3).srv.mig.mu.Unlock()
		ents, _ := os.ReadDir(filepath.Join(coopDir, "held"))
		if left == 0 && len(ents) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("node 3 still holds %d copies or moves, %d marks", left, len(ents))
		}
	}
	exitCounter(t, p, out, outW, 6)
}

// TestMigratePassedStdio: with the caller's pipes passed to its vprocd
// (as ssi exec does), the output stays one stream and the stdin reaches
// the copy.
func TestMigratePassedStdio(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{bin}, Migratable: true, Stdin: inR, Stdout: outW, PassFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	outW.Close()
	inR.Close()
	out := readCounter(t, outR)
	out.upTo(10)
	for _, to := range []int{3, 1} {
		if err := c.client(1).Migrate(ctx, p.Cpid, to); err != nil {
			t.Fatalf("migrate to %d: %v", to, err)
		}
		out.upTo(out.last + 20)
	}
	if _, err := io.WriteString(inW, "hi\nexit 9\n"); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() { out.rest(); close(read) }()
	st, err := p.Wait()
	if err != nil || st.Code != 9 {
		t.Errorf("status %+v, %v; want 9", st, err)
	}
	<-read
	if len(out.other) != 1 || out.other[0] != "echo: hi" {
		t.Errorf("echoed %q", out.other)
	}
}

// movesOf is node n's moves in progress (package migrate's Status).
func movesOf(c *testCluster, n uint32) []migrate.Status {
	m := c.node(n).srv.mig
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node.Moves()
}

// TestMigrateSourceDown: the source goes DOWN after the target confirmed
// and before a decision: the target asks the arbiter (the origin) to
// commit, runs the program, and the caller's exec follows it there; the
// source's original, frozen, never runs again.
func TestMigrateSourceDown(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, bin, "slowrestore")
	out.upTo(10)
	orig, _ := c.node(2).srv.record(cpid.CPID(p.Cpid))
	defer syscall.Kill(-int(orig), syscall.SIGKILL)
	mctx, mcancel := context.WithTimeout(ctx, 15*time.Second)
	defer mcancel()
	go func() { _ = c.client(1).Migrate(mctx, p.Cpid, 3) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("waiting for %s: node 3 has %v", what, movesOf(c, 3))
			}
		}
	}
	waitFor("node 3 to restore", func() bool { return len(movesOf(c, 3)) > 0 })
	// The source's word to the origin is lost from now on: it sees the
	// origin DOWN, and asks another arbiter, which no one else believes.
	c.node(2).srv.Membership(1, false)
	waitFor("node 3 to confirm", func() bool {
		ms := movesOf(c, 3)
		return len(ms) == 1 && ms[0].State == "confirmed"
	})
	at := out.last
	for _, n := range []uint32{1, 3} {
		c.node(n).srv.Membership(2, false)
	}
	out.upTo(at + 30)
	if _, ok := c.node(3).srv.record(cpid.CPID(p.Cpid)); !ok {
		t.Error("node 3 does not run it")
	}
	if st, err := readProc(orig); err != nil || st.start == 0 {
		t.Errorf("the original at node 2: %v", err)
	}
	exitCounter(t, p, out, outW, 6)
}
