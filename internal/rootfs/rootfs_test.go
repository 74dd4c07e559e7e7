package rootfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/openssi/openssi/internal/roottest"
)

// cacheDir is the shared cache the package tests and the lab use, so this
// test warms it rather than building a throwaway image.
func cacheDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("OPENSSI_ROOTFS_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(home, ".cache", "openssi", "rootfs")
}

func TestEnsureAndClone(t *testing.T) {
	roottest.Need(t, "debootstrap")
	dir, err := Ensure(cacheDir(t), testWriter{t})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	for _, f := range []string{"usr/lib/systemd/systemd", "usr/bin/apt-get", "usr/bin/dbus-daemon", "usr/bin/gpg", "usr/sbin/ip", stamp} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("image lacks %s: %v", f, err)
		}
	}
	// The container's system users must traverse its /.
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("image root mode = %v, %v; want 0755", st.Mode().Perm(), err)
	}
	// Warm: a second call returns the same image at once.
	again, err := Ensure(cacheDir(t), nil)
	if err != nil || again != dir {
		t.Fatalf("second Ensure = %q, %v; want %q", again, err, dir)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := Clone(dir, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "usr/lib/systemd/systemd")); err != nil {
		t.Fatalf("clone lacks systemd: %v", err)
	}
	if err := Clone(dir, dst); err == nil {
		t.Fatal("Clone onto an existing directory succeeded")
	}
}

func TestIncompleteEntryIsRemoved(t *testing.T) {
	cache := t.TempDir()
	broken := filepath.Join(cache, Key())
	if err := os.MkdirAll(filepath.Join(broken, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	ok, err := complete(broken)
	if err != nil || ok {
		t.Fatalf("complete(unstamped) = %v, %v; want false, nil", ok, err)
	}
	if _, err := os.Stat(broken); !os.IsNotExist(err) {
		t.Fatalf("unstamped entry not removed: %v", err)
	}
}

func TestKeyFollowsPackages(t *testing.T) {
	k := Key()
	saved := Packages
	t.Cleanup(func() { Packages = saved })
	Packages = append(append([]string(nil), saved...), "extra")
	if Key() == k {
		t.Fatal("Key did not change with the package list")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
