package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

// stoppedObstacleFS is the node's /proc, except that the fd directory of
// process pid, while it is stopped (dumped, left stopped), shows a file
// open (/etc/ld.so.cache, as a shell loop's child has while the dynamic
// loader runs) for the first left readings.
type stoppedObstacleFS struct {
	fs.FS
	pid         atomic.Int32
	left, shown atomic.Int32
}

const passingFD = "99"

func (f *stoppedObstacleFS) ReadDir(name string) ([]fs.DirEntry, error) {
	ents, err := fs.ReadDir(f.FS, name)
	pid := f.pid.Load()
	if err != nil || pid == 0 || name != strconv.Itoa(int(pid))+"/fd" || !stoppedSoon(pid) || f.left.Add(-1) < 0 {
		return ents, err
	}
	f.shown.Add(1)
	return append(ents, fakeFD{}), nil
}

func (f *stoppedObstacleFS) ReadLink(name string) (string, error) {
	if pid := f.pid.Load(); pid != 0 && name == strconv.Itoa(int(pid))+"/fd/"+passingFD {
		return "/etc/ld.so.cache", nil
	}
	return fs.ReadLink(f.FS, name)
}

func (f *stoppedObstacleFS) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(f.FS, name) }

func stopped(pid int32) bool {
	st := state(pid)
	return st == 'T' || st == 't'
}

// state is pid's state letter in /proc (0 when it cannot be read).
func state(pid int32) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return 0
	}
	st, err := proctable.ParseStat(b)
	if err != nil {
		return 0
	}
	return st.State
}

// stoppedSoon says whether pid is stopped, or stops within 200 ms while
// it is runnable: criu dump (and restore) --leave-stopped returns with a
// SIGSTOP sent,
// which wakes the task (R) and stops it (T) before it runs an instruction
// of its own, but /proc may show it runnable until it is next scheduled.
func stoppedSoon(pid int32) bool {
	for end := time.Now().Add(200 * time.Millisecond); ; time.Sleep(time.Millisecond) {
		switch state(pid) {
		case 'T', 't':
			return true
		case 'R':
			if time.Now().Before(end) {
				continue
			}
		}
		return false
	}
}

type fakeFD struct{}

func (fakeFD) Name() string               { return passingFD }
func (fakeFD) IsDir() bool                { return false }
func (fakeFD) Type() fs.FileMode          { return fs.ModeSymlink }
func (fakeFD) Info() (fs.FileInfo, error) { return nil, fs.ErrNotExist }

// TestMigrateCRIUPassingObstacle: a tree found, once dumped and stopped,
// with a file open is let run and dumped again: a file that is open for
// fewer than obstacleTries dumps (a child's passing state) does not keep
// the move from happening; one open through all of them refuses it,
// naming the file, and the program runs on where it was.
func TestMigrateCRIUPassingObstacle(t *testing.T) {
	st := criuForTest(t)
	proc := &stoppedObstacleFS{FS: os.DirFS("/proc")}
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir(), Proc: proc, Migrate: MigrateConfig{CRIU: st}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, "sh", "-c", shellCounter)
	out.upTo(5)
	_, pid := runsOn(c, p.Cpid)
	proc.pid.Store(pid)

	// Through every dump: refused, and it runs on at node 2.
	proc.left.Store(obstacleTries)
	err := c.client(1).Migrate(ctx, p.Cpid, 3)
	if !errors.Is(err, vproc.ErrMoveFailed) || !strings.Contains(err.Error(), "has a file open (/etc/ld.so.cache)") {
		t.Errorf("a file open through %d dumps: %v, want ErrMoveFailed naming it", obstacleTries, err)
	}
	if n := proc.shown.Load(); n != obstacleTries {
		t.Errorf("dumped %d times, want %d", n, obstacleTries)
	}
	out.upTo(out.last + 5)
	if n, now := runsOn(c, p.Cpid); n != 2 || now != pid {
		t.Fatalf("after the refusal it runs on node %d (pid %d), want node 2 (pid %d)", n, now, pid)
	}

	// For two dumps: it moves at the third.
	proc.shown.Store(0)
	proc.left.Store(2)
	if err := c.client(1).Migrate(ctx, p.Cpid, 3); err != nil {
		t.Fatalf("a file open for two dumps: %v, want the move done", err)
	}
	if n := proc.shown.Load(); n != 2 {
		t.Errorf("the obstacle was seen %d times, want 2", n)
	}
	out.upTo(out.last + 5)
	if n, _ := runsOn(c, p.Cpid); n != 3 {
		t.Errorf("it runs on node %d, want 3", n)
	}
	if err := c.client(1).Kill(ctx, p.Cpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go out.rest()
	p.Wait()
	outW.Close()
}

// heldScopes is a Scoper whose scopes are made only once release is
// closed (or after a minute); it records whether each program was
// stopped when its scope's making began and when it ended.
type heldScopes struct {
	release chan struct{}
	entered atomic.Int32
	mu      sync.Mutex
	seen    []string
}

func (s *heldScopes) Scope(_ context.Context, pid int, _ uint32, _ int64) error {
	// A restore left stopped returns, like a dump, with the SIGSTOP
	// sent: the copy may show runnable until it is next scheduled.
	before := stoppedSoon(int32(pid))
	s.entered.Add(1)
	select {
	case <-s.release:
	case <-time.After(time.Minute):
	}
	after := stopped(int32(pid))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, fmt.Sprintf("stopped %v then %v", before, after))
	return nil
}

// TestMigrateCRIUScopeWhileDeciding: the restored copy's scope is made
// while the move is decided (the move commits with its scope not made
// yet), and the copy runs only once it is made.
func TestMigrateCRIUScopeWhileDeciding(t *testing.T) {
	st := criuForTest(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir(), Migrate: MigrateConfig{CRIU: st}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, "sh", "-c", shellCounter)
	out.upTo(5)
	scopes := &heldScopes{release: make(chan struct{})}
	c.node(3).srv.cfg.Scopes = scopes
	if err := c.client(1).Migrate(ctx, p.Cpid, 3); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if n := scopes.entered.Load(); n != 1 {
		t.Errorf("the move committed with %d scopes being made, want the copy's, not made yet", n)
	}
	// Committed, its copy not yet let run: ps on node 3 shows the copy
	// under the program's cpid (never under a cpid of node 3's own),
	// within the time its record takes to arrive. (The in-process nodes
	// share this machine's /proc: rows are told apart by pid.)
	var copyPID int32
	srv3 := c.node(3).srv
	srv3.mig.mu.Lock()
	for _, cp := range srv3.mig.copies {
		copyPID = int32(cp.p.Pid)
	}
	srv3.mig.mu.Unlock()
	if copyPID == 0 {
		t.Fatal("no copy held on node 3 after the commit")
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		table, err := c.client(1).Ps(ctx, vproc.PsFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var rows []int64
		for _, r := range table.Rows() {
			if r.Node == 3 && r.PID == copyPID {
				rows = append(rows, int64(r.CPID))
			}
		}
		if slices.Equal(rows, []int64{p.Cpid}) {
			break
		}
		if len(rows) > 0 || time.Now().After(deadline) {
			t.Errorf("ps on node 3 of the copy (pid %d) while its scope is made: cpids %v, want [%d]", copyPID, rows, p.Cpid)
			break
		}
	}
	close(scopes.release)
	out.upTo(out.last + 5)
	scopes.mu.Lock()
	seen := slices.Clone(scopes.seen)
	scopes.mu.Unlock()
	if !slices.Equal(seen, []string{"stopped true then true"}) {
		t.Errorf("the copy's scopes: %q, want one, made while it was stopped, before it ran", seen)
	}
	if err := c.client(1).Kill(ctx, p.Cpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go out.rest()
	p.Wait()
	outW.Close()
}
