package fsxtest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAgainstItself: two local directories agree over many operations
// (the tester has no false alarm of its own).
func TestAgainstItself(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		if err := Run(t.TempDir(), t.TempDir(), Config{Seed: seed, Ops: 2000}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFindsDifference: a difference of result or of errno between the
// two sides fails, naming what differs.
func TestFindsDifference(t *testing.T) {
	r := &runner{sides: [2]*side{{root: "test"}, {root: "ref"}}}
	err := r.both("read f0", func(s *side) (string, error) { return s.root, nil })
	if err == nil || !strings.Contains(err.Error(), "read f0: the test directory gives test, the reference ref") {
		t.Errorf("different results: %v", err)
	}
	err = r.both("unlink f0", func(s *side) (string, error) {
		if s.root == "test" {
			return "", syscall.EACCES
		}
		return "", nil
	})
	if err == nil || !strings.Contains(err.Error(), "unlink f0: the test directory says permission denied, the reference ok") {
		t.Errorf("different errnos: %v", err)
	}
	if err := r.both("same", func(s *side) (string, error) { return "x", syscall.ENOENT }); err != nil {
		t.Errorf("the same outcome: %v", err)
	}
}

// TestNeedsEmptyDirectories: a run starts from two empty directories.
func TestNeedsEmptyDirectories(t *testing.T) {
	a := t.TempDir()
	if err := os.WriteFile(filepath.Join(a, "f0"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Run(a, t.TempDir(), Config{Seed: 1, Ops: 10}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Run = %v, want a refusal of a directory that is not empty", err)
	}
}
