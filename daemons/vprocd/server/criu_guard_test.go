package server

import (
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/openssi/openssi/daemons/vprocd/movable"
	"github.com/openssi/openssi/internal/criu"
)

// TestCRIUFreezeGuards: the checks a CRIU freeze makes before it runs
// criu at all (the criu here does not exist: reaching it is a failure of
// another kind). A user's program is never dumped, whatever ssi migrate
// saw (criu runs as root: a user's program could steer it, e.g. with a
// mount namespace of its own in which the criu path is its file); a tree
// whose resident memory is over the state limit is refused before it is
// dumped to disk and memory.
func TestCRIUFreezeGuards(t *testing.T) {
	ready := criu.State{Status: criu.Ready, Bin: "/nonexistent/criu"}
	for _, tc := range []struct {
		name  string
		uid   uint32
		limit int
		says  string
	}{
		{"a user's program", 1000, 0, movable.ByCRIU},
		{"over the state limit", 0, 4096, "over the limit of a move's image"},
		{"root's, within the limit: criu is run", 0, 0, "criu dump"},
	} {
		s := &Server{cfg: Config{CoopDir: t.TempDir(), Migrate: MigrateConfig{CRIU: ready, StateLimit: tc.limit}}}
		_, err := s.criuFreeze(os.Getpid(), tc.uid)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
}

// passingFS is the /proc of a program (pid 10) whose descriptor 3 is a
// file for the first open readings of its fd directory, then closed: a
// shell loop's child while the dynamic loader reads its caches.
type passingFS struct {
	fstest.MapFS
	open, reads int
}

func (p *passingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name == "10/fd" {
		p.reads++
		if p.reads > p.open {
			delete(p.MapFS, "10/fd/3")
		}
	}
	return p.MapFS.ReadDir(name)
}

// TestSettledObstacles: ssi migrate refuses a program for an obstacle
// only when it stays over obstacleTries readings; one that passes (a
// file open for a reading or two) is no obstacle, and the readings stop
// at the first without.
func TestSettledObstacles(t *testing.T) {
	for _, tc := range []struct {
		open, reads int
		want        []string
	}{
		{0, 1, nil},
		{2, 3, nil},
		{obstacleTries - 1, obstacleTries, nil},
		{obstacleTries, obstacleTries, []string{"pid 10 has a file open (/etc/ld.so.cache) that may not exist on another node"}},
	} {
		p := &passingFS{open: tc.open, MapFS: fstest.MapFS{
			"10/status": {Data: []byte("Name:\tsleep\n")},
			"10/maps":   {Data: []byte("")},
			"10/stat":   {Data: []byte("10 (sleep) R 9 10 10 0 -1")},
			"10/fd/0":   {Data: []byte("pipe:[7]"), Mode: fs.ModeSymlink},
			"10/fd/3":   {Data: []byte("/etc/ld.so.cache"), Mode: fs.ModeSymlink},
		}}
		s := New(Config{Node: 1, Proc: p})
		got := s.settledObstacles(10)
		s.Close()
		if !slices.Equal(got, tc.want) || p.reads != tc.reads {
			t.Errorf("open for %d readings: %q after %d readings, want %q after %d", tc.open, got, p.reads, tc.want, tc.reads)
		}
	}
}
