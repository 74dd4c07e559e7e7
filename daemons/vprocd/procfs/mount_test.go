package procfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/internal/roottest"
)

// mount mounts p's view on a fresh directory every user can reach and
// unmounts it at the end of the test.
func mount(t *testing.T, p Provider) string {
	t.Helper()
	roottest.NeedFUSE(t, "ls", "cat")
	dir, err := os.MkdirTemp("", "procfs-")
	if err != nil {
		t.Fatal(err)
	}
	// MkdirTemp makes it 0700: uid 65534 must reach the mount point.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := Mount(dir, p, Options{OnError: func(err error) { t.Errorf("provider error: %v", err) }})
	if err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
		os.Remove(dir)
	})
	return dir
}

// asNobody runs a command as uid and gid 65534 and returns its output
// and exit error.
func asNobody(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestMount mounts the view with a fake provider and uses it with
// standard tools, as root and as another user.
func TestMount(t *testing.T) {
	p := sampleProvider()
	p.change(func(m map[cpid.CPID]*Proc) { delete(m, cpid.MustMake(2, 5)) }) // its errors are TestOpen's
	dir := mount(t, p)
	alice := cpid.MustMake(1, 100).String() // uid 1000
	nobodys := cpid.MustMake(3, 7).String() // uid 65534

	out, err := exec.Command("ls", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	got, want := strings.Fields(string(out)), []string{alice, nobodys}
	slices.Sort(got) // ls sorts as text
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ls %s = %q, want %q", dir, got, want)
	}
	out, err = exec.Command("ls", filepath.Join(dir, alice)).CombinedOutput()
	if err != nil || string(out) != "cmdline\nenviron\ngoto\nnode\nstat\nstatus\n" {
		t.Fatalf("ls <cpid> = %q, %v", out, err)
	}

	for _, tt := range []struct{ path, want string }{
		{alice + "/status", "Name:\tsleep\nUid:\t1000\t1000\t1000\t1000\n"},
		{alice + "/cmdline", "sleep\x001000\x00"},
		{alice + "/node", "2\n"},
		{nobodys + "/node", "4\n"},
		{alice + "/stat", "100 (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7\n"},
		{alice + "/environ", "HOME=/home/alice\x00SECRET=hunter2\x00"}, // root may
	} {
		b, err := os.ReadFile(filepath.Join(dir, tt.path))
		if err != nil || string(b) != tt.want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", tt.path, b, err, tt.want)
		}
	}

	fi, err := os.Stat(filepath.Join(dir, alice, "environ"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != 0o400 || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("environ: mode %v uid %d gid %d, want 0400 owned by 1000", fi.Mode(), st.Uid, st.Gid)
	}
	if fi, err := os.Stat(filepath.Join(dir, alice)); err != nil || fi.Mode() != fs.ModeDir|0o555 {
		t.Errorf("dir: %v, %v", fi, err)
	}

	// Another user reads what anyone may, and not another's environment.
	if out, err := asNobody("cat", filepath.Join(dir, alice, "status")); err != nil || !strings.Contains(out, "Uid:\t1000") {
		t.Errorf("nobody cat status = %q, %v", out, err)
	}
	if out, err := asNobody("cat", filepath.Join(dir, alice, "environ")); err == nil || !strings.Contains(out, "Permission denied") || strings.Contains(out, "hunter2") {
		t.Errorf("nobody cat alice's environ = %q, %v; want Permission denied", out, err)
	}
	if out, err := asNobody("cat", filepath.Join(dir, nobodys, "environ")); err != nil || out != "HOME=/nonexistent\x00" {
		t.Errorf("nobody cat own environ = %q, %v", out, err)
	}

	// goto: write-only for the owner and root, through a shell's echo
	// (which opens with O_TRUNC); the move is the provider's. bash, as
	// dash's echo says "I/O error" for any failed write.
	roottest.Need(t, "bash")
	if fi, err := os.Stat(filepath.Join(dir, alice, "goto")); err != nil || fi.Mode() != 0o200 || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("goto: %v, %v; want mode 0200 owned by 1000", fi, err)
	}
	if out, err := exec.Command("bash", "-c", "echo 3 > "+filepath.Join(dir, alice, "goto")).CombinedOutput(); err != nil {
		t.Errorf("root: echo 3 > goto: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, alice, "node")); err != nil || string(b) != "3\n" {
		t.Errorf("node after goto = %q, %v; want 3", b, err)
	}
	for _, tt := range []struct{ who, text, want string }{
		{"nobody", "2", "Permission denied"}, // not alice's owner
		{"root", "0", "Invalid argument"},
		{"root", "x", "Invalid argument"},
	} {
		sh := "echo " + tt.text + " > " + filepath.Join(dir, alice, "goto")
		var out string
		var err error
		if tt.who == "nobody" {
			out, err = asNobody("bash", "-c", sh)
		} else {
			var b []byte
			b, err = exec.Command("bash", "-c", sh).CombinedOutput()
			out = string(b)
		}
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %s: %q, %v; want %s", tt.who, sh, out, err, tt.want)
		}
	}
	if out, err := asNobody("bash", "-c", "echo 2 > "+filepath.Join(dir, nobodys, "goto")); err != nil {
		t.Errorf("nobody moving its own process: %v\n%s", err, out)
	}
	if _, err := os.ReadFile(filepath.Join(dir, alice, "goto")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("read goto: %v, want EACCES", err)
	}
	p.mu.Lock()
	moves := slices.Clone(p.moves)
	p.mu.Unlock()
	if want := []string{alice + " 0 3", nobodys + " 65534 2"}; !slices.Equal(moves, want) {
		t.Errorf("moves %q, want %q", moves, want)
	}

	// Read-only, whoever asks.
	if err := os.WriteFile(filepath.Join(dir, alice, "status"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write: %v, want EROFS", err)
	}
	for name, op := range map[string]func() error{
		"mkdir":           func() error { return os.Mkdir(filepath.Join(dir, "x"), 0o755) },
		"create":          func() error { return os.WriteFile(filepath.Join(dir, alice, "new"), nil, 0o644) },
		"truncate status": func() error { return os.Truncate(filepath.Join(dir, alice, "status"), 0) },
		"chmod status":    func() error { return os.Chmod(filepath.Join(dir, alice, "status"), 0o666) },
		"chmod goto":      func() error { return os.Chmod(filepath.Join(dir, alice, "goto"), 0o666) },
		"remove":          func() error { return os.Remove(filepath.Join(dir, alice, "status")) },
		"rename":          func() error { return os.Rename(filepath.Join(dir, alice, "stat"), filepath.Join(dir, alice, "x")) },
		"symlink":         func() error { return os.Symlink("x", filepath.Join(dir, alice, "x")) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}

	// Nothing is cached: a change at the provider shows at once.
	p.change(func(m map[cpid.CPID]*Proc) { m[cpid.MustMake(1, 100)].Files.Status = []byte("changed\n") })
	if b, err := os.ReadFile(filepath.Join(dir, alice, "status")); err != nil || string(b) != "changed\n" {
		t.Errorf("after a change: %q, %v", b, err)
	}
	p.change(func(m map[cpid.CPID]*Proc) { delete(m, cpid.MustMake(3, 7)) })
	if _, err := os.Stat(filepath.Join(dir, nobodys, "status")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of an exited process: %v, want ENOENT", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 || ents[0].Name() != alice {
		t.Errorf("ReadDir after an exit = %v, %v", ents, err)
	}
	for _, name := range []string{"0", "abc", "-4194404", "04194404", alice + "/nope"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %s: %v, want ENOENT", name, err)
		}
	}
}

// TestMountLocal serves this node's real /proc through Local and reads
// this test's own process from the mount.
func TestMountLocal(t *testing.T) {
	dir := mount(t, Local{R: proctable.Reader{FS: os.DirFS("/proc"), Node: 5}})
	me := cpid.MustMake(5, int32(os.Getpid())).String()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return e.Name() == me }) {
		t.Fatalf("ReadDir lacks own cpid %s among %d entries", me, len(ents))
	}
	want, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, me, "cmdline")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cmdline = %q, %v; want %q", got, err, want)
	}
	if got, err := os.ReadFile(filepath.Join(dir, me, "node")); err != nil || string(got) != "5\n" {
		t.Fatalf("node = %q, %v", got, err)
	}
	st, err := os.ReadFile(filepath.Join(dir, me, "stat"))
	if err != nil || !strings.HasPrefix(string(st), strconv.Itoa(os.Getpid())+" (") {
		t.Fatalf("stat = %q, %v", st, err)
	}
	if env, err := os.ReadFile(filepath.Join(dir, me, "environ")); err != nil || len(env) == 0 {
		t.Fatalf("environ as root: %d bytes, %v", len(env), err)
	}
	// Another node's cpid and a pid that does not exist are not there.
	for _, c := range []cpid.CPID{cpid.MustMake(4, int32(os.Getpid())), cpid.MustMake(5, cpid.MaxPID)} {
		if _, err := os.Stat(filepath.Join(dir, c.String())); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %d: %v, want ENOENT", c, err)
		}
	}
}

// TestMountFUSENotInherited: a program started after the mount (vprocd
// starts its callers' programs) does not inherit the mount's /dev/fuse
// connection, with which it could answer the kernel's requests for the
// view as the filesystem.
func TestMountFUSENotInherited(t *testing.T) {
	mount(t, sampleProvider())
	out, err := exec.Command("sh", "-c", `for f in /proc/self/fd/*; do readlink "$f" || true; done`).CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Fatalf("a child holds /dev/fuse:\n%s", out)
	}
}
