package server

import (
	"os"
	"strings"
	"testing"

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
		s := &Server{cfg: Config{Migrate: MigrateConfig{CRIU: ready, StateLimit: tc.limit}}}
		_, err := s.criuFreeze(os.Getpid(), tc.uid)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
}
