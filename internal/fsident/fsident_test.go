package fsident

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/openssi/openssi/internal/roottest"
)

// credLines are the identity lines of a /proc/.../status: the uids and
// gids (real, effective, saved, fs), the supplementary groups and the
// effective capabilities (a fsuid other than 0 drops root's file
// capabilities; going back to 0 must bring them back).
var credLines = []string{"Uid:", "Gid:", "Groups:", "CapEff:"}

// identity reads the credLines of the status file at path, one line;
// gone says the thread has ended.
func identity(path string) (id string, gone bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return "", true, nil
	}
	if err != nil {
		return "", false, err
	}
	var parts []string
	for _, key := range credLines {
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, key); ok {
				parts = append(parts, key+" "+strings.Join(strings.Fields(v), " "))
				found = true
			}
		}
		if !found {
			return "", false, fmt.Errorf("%s has no %s line", path, key)
		}
	}
	return strings.Join(parts, "; "), false, nil
}

// threads is the identity of every thread of this process, by tid.
func threads(t *testing.T) map[string]string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, p := range tasks {
		id, gone, err := identity(p)
		if err != nil {
			t.Fatal(err)
		}
		if !gone {
			ids[filepath.Base(filepath.Dir(p))] = id
		}
	}
	return ids
}

// TestDoHandsThreadsBack: Do gives a thread the caller's
// fsuid, fsgid and groups only while f runs. After many concurrent calls
// as other users (each f checking it runs with its caller's identity),
// every thread of the process, the ones that ran them included, has
// root's uids, gids, groups and capabilities again: no later goroutine
// of the daemon runs with a caller's identity.
func TestDoHandsThreadsBack(t *testing.T) {
	roottest.Need(t)
	before := threads(t)
	var root string
	for tid, id := range before {
		if root == "" {
			root = id
		}
		if id != root {
			t.Fatalf("before any call, thread %s has %q, another %q", tid, id, root)
		}
	}
	if !strings.HasPrefix(root, "Uid: 0 0 0 0;") {
		t.Fatalf("this test runs as %q, not root", root)
	}
	// root's real, effective and saved gids, which Do leaves.
	_, gids, _ := strings.Cut(root, "Gid: ")
	gid3 := strings.Join(strings.Fields(gids)[:3], " ")

	const callers, rounds = 48, 25
	var wg sync.WaitGroup
	errs := make(chan error, callers*rounds)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				c := Cred{UID: uint32(10000 + i), GID: uint32(20000 + j), Groups: []uint32{uint32(30000 + i), uint32(40000 + j)}}
				want := fmt.Sprintf("Uid: 0 0 0 %d; Gid: %s %d; Groups: %d %d;", c.UID, gid3, c.GID, c.Groups[0], c.Groups[1])
				err := Do(c, func() {
					// What Start does meanwhile: look at files as c.
					_, _ = os.Stat("/etc/passwd")
					id, _, err := identity("/proc/thread-self/status")
					if err != nil || !strings.HasPrefix(id, want) {
						errs <- fmt.Errorf("as uid %d: the thread has %q (%v), want %q", c.UID, id, err, want)
					}
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	after := threads(t)
	if len(after) < 2 {
		t.Fatalf("%d threads after %d concurrent calls: the test did not exercise threads", len(after), callers)
	}
	for tid, id := range after {
		if id != root {
			t.Errorf("thread %s has %q after the calls, want root's %q", tid, id, root)
		}
	}
}

// TestRootCallerKeepsItsGroup: a root caller of another group makes
// files of that group (its fsgid), as its own process would.
func TestRootCallerKeepsItsGroup(t *testing.T) {
	roottest.Need(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	var err error
	if derr := Do(Cred{UID: 0, GID: 4242}, func() { err = os.WriteFile(p, nil, 0o644) }); derr != nil || err != nil {
		t.Fatal(derr, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 4242 {
		t.Errorf("root's file of group 4242 is %d:%d", st.Uid, st.Gid)
	}
}
