package cfsmount

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/fsxtest"
)

// TestFsx does the same seeded random operations in a mount and in a
// local directory and fails at the first difference (its seed
// reproduces it).
func TestFsx(t *testing.T) {
	s := serve(t, Options{Timeout: 10 * time.Second})
	for seed := uint64(1); seed <= 4; seed++ {
		dir := filepath.Join(s.mnt, fmt.Sprintf("seed%d", seed))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fsxtest.Run(dir, t.TempDir(), fsxtest.Config{Seed: seed, Ops: 3000}); err != nil {
			t.Fatal(err)
		}
	}
}
