package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestEndHeldCopies: a program marked held for a move by a vprocd that
// then stopped is ended by the next; a mark whose pid is another
// process's now (another start time) ends nothing; the CRIU images it left
// are removed.
func TestEndHeldCopies(t *testing.T) {
	dir := t.TempDir()
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "60")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	held, other := start(), start()
	old := New(Config{Node: 1, CoopDir: dir})
	old.markHeld(held.Process.Pid)
	unmark := old.markHeld(other.Process.Pid)
	unmark()
	// A mark of other's pid with another start time: the process it
	// named ended and the pid went to other, which must not be ended.
	if err := os.WriteFile(filepath.Join(dir, "held", fmt.Sprintf("%d-1", other.Process.Pid)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "held", "bogus"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := old.imageDir("dump-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, "pages-1.img"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	old.Close()

	restarted := New(Config{Node: 1, CoopDir: dir})
	defer restarted.Close()
	if n := restarted.EndHeldCopies(); n != 1 {
		t.Errorf("ended %d, want 1", n)
	}
	done := make(chan error, 1)
	go func() { done <- held.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the held program still runs")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the unmarked program was ended: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "held")); len(ents) != 0 {
		t.Errorf("marks left: %v", ents)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("a previous vprocd's image left: %v", err)
	}
}

// TestRuntimeDirModes: whichever of a CRIU image, a held mark or a
// checkpoint socket comes first on a node makes vprocd's runtime
// directory traversable by all (a program reaches its checkpoint socket
// through it), and the images' and marks' directories root's only.
func TestRuntimeDirModes(t *testing.T) {
	for _, first := range []string{"images", "held"} {
		run := filepath.Join(t.TempDir(), "vprocd-coop")
		s := New(Config{Node: 1, CoopDir: run})
		if first == "images" {
			if _, err := s.imageDir("restore-"); err != nil {
				t.Fatal(err)
			}
		} else {
			s.markHeld(os.Getpid())()
		}
		s.Close()
		for dir, want := range map[string]os.FileMode{run: 0o711, filepath.Join(run, first): 0o700} {
			st, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s first: %s has mode %v, want %v", first, dir, st.Mode().Perm(), want)
			}
		}
	}
}
