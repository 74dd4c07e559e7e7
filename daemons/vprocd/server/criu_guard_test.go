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
	// other: after the open readings descriptor 3 is another file (a
	// child's next passing one) rather than closed.
	other bool
}

func (p *passingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name == "10/fd" {
		p.reads++
		if p.reads > p.open {
			delete(p.MapFS, "10/fd/3")
			if p.other {
				p.MapFS["10/fd/3"] = &fstest.MapFile{Data: []byte("/usr/lib/locale/C.utf8/LC_CTYPE"), Mode: fs.ModeSymlink}
			}
		}
	}
	return p.MapFS.ReadDir(name)
}

// TestSettledObstacles: ssi migrate refuses a program for an obstacle
// only when it stays over obstacleTries readings; one that passes (a
// file open for a reading or two, or another file each time) is no
// obstacle, and the readings stop once none stayed.
func TestSettledObstacles(t *testing.T) {
	for _, tc := range []struct {
		open, reads int
		other       bool
		want        []string
	}{
		{0, 1, false, nil},
		{2, 3, false, nil},
		{obstacleTries - 1, obstacleTries, false, nil},
		{obstacleTries, obstacleTries, false, []string{"pid 10 has a file open (/etc/ld.so.cache) that may not exist on another node"}},
		// Another file open at each reading: no obstacle stayed.
		{1, 2, true, nil},
	} {
		p := &passingFS{open: tc.open, other: tc.other, MapFS: fstest.MapFS{
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

// TestRoomForImage: an image larger than the free space of the runtime
// directory's filesystem is refused, saying so; one that fits is not.
func TestRoomForImage(t *testing.T) {
	s := &Server{cfg: Config{CoopDir: t.TempDir()}}
	if err := s.roomForImage(1 << 20); err != nil {
		t.Errorf("1 MiB: %v", err)
	}
	if err := s.roomForImage(1 << 62); err == nil || !strings.Contains(err.Error(), "does not fit in the") {
		t.Errorf("4 EiB: %v, want a refusal", err)
	}
}
