package export

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/cfsd/handle"
	"github.com/openssi/openssi/internal/roottest"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"golang.org/x/sys/unix"
)

var (
	root   = &pb.Caller{}
	nobody = &pb.Caller{Uid: 65534, Gid: 65534}
)

// exported serves a fresh directory holding what setup made in it; it
// returns the export and the directory's parent (outside the export).
func exported(t testing.TB, setup func(dir string)) (*Export, string) {
	t.Helper()
	roottest.Need(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "export")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(dir)
	}
	e, err := Open("home", dir, bytes.Repeat([]byte{3}, handle.KeySize), Limits{FilesPerClient: 4, Files: 6, MaxIO: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, base
}

func write(t testing.TB, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func op(c *pb.Caller) Op { return Op{Client: "node2", Cred: CredOf(c)} }

func wantErrno(t *testing.T, what string, got int32, want unix.Errno) {
	t.Helper()
	if unix.Errno(got) != want {
		t.Errorf("%s: errno %v, want %v", what, unix.Errno(got), want)
	}
}

func lookup(t *testing.T, e *Export, c *pb.Caller, dir []byte, name string) *pb.Entry {
	t.Helper()
	ent := e.Lookup(op(c), &pb.NameRequest{Caller: c, Dir: dir, Name: name})
	if ent.Errno != 0 {
		t.Fatalf("lookup %s: %v", name, unix.Errno(ent.Errno))
	}
	return ent
}

// TestHandlesStayInTheExport: a client gets only handles the server
// signed, so it cannot open a file outside the export by composing the
// kernel's handle of it, nor change a handle it was given.
func TestHandlesStayInTheExport(t *testing.T) {
	var outside string
	e, base := exported(t, func(dir string) { write(t, filepath.Join(dir, "in"), "in", 0o644) })
	outside = filepath.Join(base, "secret")
	write(t, outside, "secret", 0o600)

	// The kernel's handle of the file outside, as a client that can
	// read its own node's disk could compute it.
	kh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, outside, 0)
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte{1, 0, 0, 0, 0, byte(kh.Size())}, kh.Bytes()...)
	forged = append(forged, make([]byte, 16)...)
	forged[1], forged[2], forged[3], forged[4] = byte(kh.Type()>>24), byte(kh.Type()>>16), byte(kh.Type()>>8), byte(kh.Type())
	wantErrno(t, "open of a forged handle", e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: forged}).Errno, unix.ESTALE)

	// The signature is all that keeps it out: the same kernel handle,
	// had this export signed it, would open the file outside.
	own, err := e.signer.Encode(handle.Kernel{Type: kh.Type(), Bytes: kh.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if rep := e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: own, Flags: unix.O_RDONLY}); rep.Errno != 0 {
		t.Fatalf("the export's own signature on the kernel handle: %v (the test no longer shows the risk)", unix.Errno(rep.Errno))
	}

	// A handle another export (another key) signed.
	other, err := handle.NewSigner("home", bytes.Repeat([]byte{4}, handle.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := other.Encode(handle.Kernel{Type: kh.Type(), Bytes: kh.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "getattr of another key's handle", e.GetAttr(op(root), &pb.HandleRequest{Caller: root, Handle: signed}).Errno, unix.ESTALE)

	// Names are one entry of the directory: no "..", no slashes.
	top := e.Root(op(root), nil)
	for _, name := range []string{"..", ".", "", "../secret", "a/b", "a\x00b"} {
		wantErrno(t, "lookup "+name, e.Lookup(op(root), &pb.NameRequest{Caller: root, Dir: top.Handle, Name: name}).Errno, unix.EINVAL)
	}
	wantErrno(t, "rename out", e.Rename(op(root), &pb.RenameRequest{Caller: root, Dir: top.Handle, Name: "in", NewDir: top.Handle, NewName: "../out"}).Errno, unix.EINVAL)
}

// TestSymlinksAreNotFollowedOnTheServer: a symbolic link to a file
// outside the export (to /etc/shadow, say) is only text to the server:
// it opens, lists, truncates or reads the attributes of the link itself,
// never of where it points.
func TestSymlinksAreNotFollowedOnTheServer(t *testing.T) {
	var target string
	e, base := exported(t, nil)
	target = filepath.Join(base, "secret")
	write(t, target, "secret", 0o644)
	if err := os.Symlink(target, filepath.Join(base, "export", "link")); err != nil {
		t.Fatal(err)
	}
	top := e.Root(op(root), nil)
	link := lookup(t, e, root, top.Handle, "link")
	if link.Attr.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("lookup of the link gives mode %o", link.Attr.Mode)
	}
	wantErrno(t, "open", e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: link.Handle, Flags: unix.O_RDWR}).Errno, unix.ELOOP)
	wantErrno(t, "readdir", e.ReadDir(op(root), &pb.ReadDirRequest{Caller: root, Handle: link.Handle}).Errno, unix.ENOTDIR)
	size := uint64(0)
	wantErrno(t, "truncate", e.SetAttr(op(root), &pb.SetAttrRequest{Caller: root, Handle: link.Handle, Size: &size}).Errno, unix.EINVAL)
	wantErrno(t, "setxattr", e.SetXattr(op(root), &pb.XattrRequest{Caller: root, Handle: link.Handle, Name: "user.x", Value: []byte("y")}).Errno, unix.EPERM)
	wantErrno(t, "lookup through the link", e.Lookup(op(root), &pb.NameRequest{Caller: root, Dir: link.Handle, Name: "x"}).Errno, unix.ENOTDIR)
	// Create over the link's name makes no file where it points.
	wantErrno(t, "create over the link", e.Create(op(root), &pb.CreateRequest{Caller: root, Dir: top.Handle, Name: "link", Flags: unix.O_WRONLY | unix.O_TRUNC, Mode: 0o644}).Errno, unix.ELOOP)
	if b, err := os.ReadFile(target); err != nil || string(b) != "secret" {
		t.Fatalf("the link's target now holds %q, %v", b, err)
	}
}

// TestCallersIdentity: every operation is done as its caller: nobody
// cannot read or change root's private file, and a file nobody creates
// is nobody's.
func TestCallersIdentity(t *testing.T) {
	e, base := exported(t, func(dir string) {
		write(t, filepath.Join(dir, "private"), "root only", 0o600)
		if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o1777); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil { // os.Chmod drops the sticky bit
			t.Fatal(err)
		}
	})
	top := e.Root(op(root), nil)
	private := lookup(t, e, nobody, top.Handle, "private")
	wantErrno(t, "nobody opens root's 0600 file", e.Open(op(nobody), &pb.OpenRequest{Caller: nobody, Handle: private.Handle, Flags: unix.O_RDONLY}).Errno, unix.EACCES)
	mode := uint32(0o666)
	wantErrno(t, "nobody chmods it", e.SetAttr(op(nobody), &pb.SetAttrRequest{Caller: nobody, Handle: private.Handle, Mode: &mode}).Errno, unix.EPERM)
	uid := uint32(65534)
	wantErrno(t, "nobody chowns it to itself", e.SetAttr(op(nobody), &pb.SetAttrRequest{Caller: nobody, Handle: private.Handle, Uid: &uid}).Errno, unix.EPERM)
	wantErrno(t, "nobody creates in the root-owned top", e.Create(op(nobody), &pb.CreateRequest{Caller: nobody, Dir: top.Handle, Name: "x", Flags: unix.O_WRONLY, Mode: 0o644}).Errno, unix.EACCES)

	tmp := lookup(t, e, nobody, top.Handle, "tmp")
	made := e.Create(op(nobody), &pb.CreateRequest{Caller: nobody, Dir: tmp.Handle, Name: "mine", Flags: unix.O_WRONLY, Mode: 0o640})
	if made.Errno != 0 {
		t.Fatalf("nobody creates in a 1777 directory: %v", unix.Errno(made.Errno))
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(base, "export", "tmp", "mine"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 65534 || st.Gid != 65534 || st.Mode&0o7777 != 0o640 {
		t.Errorf("nobody's new file: uid %d gid %d mode %o, want 65534 65534 640", st.Uid, st.Gid, st.Mode&0o7777)
	}
	// Sticky: nobody may not remove root's file from tmp.
	write(t, filepath.Join(base, "export", "tmp", "roots"), "", 0o644)
	wantErrno(t, "nobody unlinks root's file in a sticky directory", e.Unlink(op(nobody), &pb.NameRequest{Caller: nobody, Dir: tmp.Handle, Name: "roots"}).Errno, unix.EPERM)
}

// TestOpenFilesPerClient: a client node holds at most FilesPerClient
// open files, uses only its own, and CloseClient closes them all.
func TestOpenFilesPerClient(t *testing.T) {
	e, _ := exported(t, func(dir string) { write(t, filepath.Join(dir, "f"), "data", 0o644) })
	top := e.Root(op(root), nil)
	f := lookup(t, e, root, top.Handle, "f")
	var fhs []uint64
	for i := 0; i < 4; i++ {
		rep := e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY})
		if rep.Errno != 0 {
			t.Fatalf("open %d: %v", i, unix.Errno(rep.Errno))
		}
		fhs = append(fhs, rep.Fh)
	}
	wantErrno(t, "a fifth open", e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY}).Errno, unix.EMFILE)
	// Another node's open files are its own: it can open, but not read
	// or close node2's.
	node3 := Op{Client: "node3", Cred: CredOf(root)}
	if rep := e.Open(node3, &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY}); rep.Errno != 0 {
		t.Fatalf("node3's open: %v", unix.Errno(rep.Errno))
	}
	wantErrno(t, "node3 reads node2's file", e.Read(node3, &pb.ReadRequest{Caller: root, Fh: fhs[0], Size: 4}).Errno, unix.EBADF)
	wantErrno(t, "node3 closes node2's file", e.Release(node3, &pb.FileRequest{Caller: root, Fh: fhs[0]}).Errno, unix.EBADF)
	if rep := e.Read(op(root), &pb.ReadRequest{Caller: root, Fh: fhs[0], Size: 4}); rep.Errno != 0 || string(rep.Data) != "data" {
		t.Fatalf("node2 reads its file: %q %v", rep.Data, unix.Errno(rep.Errno))
	}
	if n := e.CloseClient("node2"); n != 4 || e.OpenFiles("node2") != 0 {
		t.Fatalf("CloseClient closed %d, %d left open", n, e.OpenFiles("node2"))
	}
	wantErrno(t, "a read after CloseClient", e.Read(op(root), &pb.ReadRequest{Caller: root, Fh: fhs[1], Size: 4}).Errno, unix.EBADF)
	if e.OpenFiles("node3") != 1 {
		t.Errorf("node3 has %d open files, want 1", e.OpenFiles("node3"))
	}
	// All clients together: at most Files (6) open.
	for i, node := range []string{"node4", "node5", "node6", "node7", "node8", "node9"} {
		rep := e.Open(Op{Client: node, Cred: CredOf(root)}, &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY})
		if i < 5 && rep.Errno != 0 {
			t.Fatalf("%s's open with %d files open in all: %v", node, 1+i, unix.Errno(rep.Errno))
		}
		if i == 5 {
			wantErrno(t, "a seventh file open in all", rep.Errno, unix.EMFILE)
		}
	}
}

// TestRemovedFileIsStale: the handle of a removed file answers ESTALE,
// as NFS does, while a file still open keeps its data.
func TestRemovedFileIsStale(t *testing.T) {
	e, base := exported(t, func(dir string) { write(t, filepath.Join(dir, "f"), "data", 0o644) })
	top := e.Root(op(root), nil)
	f := lookup(t, e, root, top.Handle, "f")
	open := e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY})
	if open.Errno != 0 {
		t.Fatalf("open: %v", unix.Errno(open.Errno))
	}
	if err := os.Remove(filepath.Join(base, "export", "f")); err != nil {
		t.Fatal(err)
	}
	if rep := e.Read(op(root), &pb.ReadRequest{Caller: root, Fh: open.Fh, Size: 4}); string(rep.Data) != "data" {
		t.Errorf("the open file reads %q after its unlink", rep.Data)
	}
	e.Release(op(root), &pb.FileRequest{Caller: root, Fh: open.Fh})
	wantErrno(t, "getattr of the removed file", e.GetAttr(op(root), &pb.HandleRequest{Caller: root, Handle: f.Handle}).Errno, unix.ESTALE)
}

func TestOpenRefusesWhatCannotServe(t *testing.T) {
	if _, err := Open("x", "/nonexistent/dir", bytes.Repeat([]byte{1}, handle.KeySize), DefaultLimits); err == nil || !errors.Is(err, unix.ENOENT) {
		t.Errorf("Open of a missing directory: %v", err)
	}
	if _, err := Open("x", "/proc", bytes.Repeat([]byte{1}, handle.KeySize), DefaultLimits); err == nil {
		t.Errorf("Open of /proc (no file handles) succeeded")
	}
}

// FuzzLookup: a name from a client is outside input; whatever it is,
// a lookup in the export's top directory finds only its own entries
// ("in" and "sub", nothing above), and never panics.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"in", "sub", "..", ".", "", "../secret", "in/..", "sub/../../secret", "\x00", "secret"} {
		f.Add(s)
	}
	e, _ := exported(f, func(dir string) {
		write(f, filepath.Join(dir, "in"), "in", 0o644)
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
			f.Fatal(err)
		}
		write(f, filepath.Join(filepath.Dir(dir), "secret"), "secret", 0o644)
	})
	top := e.Root(op(root), nil)
	if ent := e.Lookup(op(root), &pb.NameRequest{Caller: root, Dir: top.Handle, Name: "in"}); ent.Errno != 0 {
		f.Fatalf("lookup in: %v", unix.Errno(ent.Errno))
	}
	f.Fuzz(func(t *testing.T, name string) {
		ent := e.Lookup(op(root), &pb.NameRequest{Caller: root, Dir: top.Handle, Name: name})
		if ent.Errno == 0 && name != "in" && name != "sub" {
			t.Fatalf("lookup %q found a file (ino %d)", name, ent.Attr.Ino)
		}
	})
}

// TestOpensOnlyFilesAndDirectories: the server never opens a FIFO or a
// device node for a client (a client's kernel opens those on its own
// node): an open of a FIFO would block the server's thread, an open of a
// device would hand the server's devices out. Neither hangs.
func TestOpensOnlyFilesAndDirectories(t *testing.T) {
	e, _ := exported(t, func(dir string) {
		if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	})
	top := e.Root(op(root), nil)
	for _, name := range []string{"fifo", "null"} {
		ent := lookup(t, e, nobody, top.Handle, name)
		for _, flags := range []uint32{unix.O_RDONLY, unix.O_WRONLY} {
			wantErrno(t, "open "+name, e.Open(op(nobody), &pb.OpenRequest{Caller: nobody, Handle: ent.Handle, Flags: flags}).Errno, unix.ENXIO)
		}
		wantErrno(t, "create over "+name, e.Create(op(nobody), &pb.CreateRequest{Caller: nobody, Dir: top.Handle, Name: name, Flags: unix.O_WRONLY, Mode: 0o644}).Errno, unix.ENXIO)
	}
	if n := e.OpenFiles("node2"); n != 0 {
		t.Errorf("%d files left open", n)
	}
}

// TestOpenForNobody: an open whose request was cancelled (its caller
// interrupted, the client timed out) leaves no file open on the server,
// and a client's new mount (Root) closes what its old one left.
func TestOpenForNobody(t *testing.T) {
	e, _ := exported(t, func(dir string) { write(t, filepath.Join(dir, "f"), "data", 0o644) })
	top := e.Root(op(root), nil)
	f := lookup(t, e, root, top.Handle, "f")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := Op{Client: "node2", Cred: CredOf(root), Ctx: ctx}
	wantErrno(t, "a cancelled open", e.Open(gone, &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY}).Errno, unix.EINTR)
	wantErrno(t, "a cancelled create", e.Create(gone, &pb.CreateRequest{Caller: root, Dir: top.Handle, Name: "g", Flags: unix.O_WRONLY, Mode: 0o644}).Errno, unix.EINTR)
	if n := e.OpenFiles("node2"); n != 0 {
		t.Fatalf("%d files open after cancelled opens", n)
	}
	for i := 0; i < 3; i++ {
		if rep := e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: f.Handle, Flags: unix.O_RDONLY}); rep.Errno != 0 {
			t.Fatal(unix.Errno(rep.Errno))
		}
	}
	e.Root(op(root), nil)
	if n := e.OpenFiles("node2"); n != 0 {
		t.Errorf("%d files of the old mount open after a new mount", n)
	}
}

// TestMovedExportStalesItsHandles: an export given another directory
// under the same name and key does not honour the handles of the old
// one (they could name files the new one does not export).
func TestMovedExportStalesItsHandles(t *testing.T) {
	roottest.Need(t)
	base := t.TempDir()
	wide := filepath.Join(base, "wide")
	if err := os.MkdirAll(filepath.Join(wide, "narrow"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(wide, "private"), "not in narrow", 0o644)
	key := bytes.Repeat([]byte{5}, handle.KeySize)
	e, err := Open("home", wide, key, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	private := lookup(t, e, root, e.Root(op(root), nil).Handle, "private")
	e.Close()
	e, err = Open("home", filepath.Join(wide, "narrow"), key, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	wantErrno(t, "open of the old export's handle", e.Open(op(root), &pb.OpenRequest{Caller: root, Handle: private.Handle, Flags: unix.O_RDONLY}).Errno, unix.ESTALE)
}

// TestPrivilegedXattrs: the server keeps CAP_SYS_ADMIN under a caller's
// identity, so it refuses trusted.* to callers other than root itself,
// and security.* changes; root still has them. A symbolic link lists no
// attributes.
func TestPrivilegedXattrs(t *testing.T) {
	e, base := exported(t, func(dir string) { write(t, filepath.Join(dir, "f"), "", 0o666) })
	if err := unix.Setxattr(filepath.Join(base, "export", "f"), "trusted.secret", []byte("root only"), 0); err != nil {
		t.Skipf("this file system keeps no trusted.* attributes: %v", err)
	}
	if err := os.Symlink("f", filepath.Join(base, "export", "l")); err != nil {
		t.Fatal(err)
	}
	top := e.Root(op(root), nil)
	f := lookup(t, e, nobody, top.Handle, "f")
	if rep := e.ListXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: f.Handle, Size: 1024}); rep.Errno != 0 || strings.Contains(string(rep.Value), "trusted.") {
		t.Errorf("nobody lists %q (%v)", rep.Value, unix.Errno(rep.Errno))
	}
	wantErrno(t, "nobody reads trusted.secret", e.GetXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: f.Handle, Name: "trusted.secret", Size: 64}).Errno, unix.ENODATA)
	wantErrno(t, "nobody sets trusted.x", e.SetXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: f.Handle, Name: "trusted.x", Value: []byte("y")}).Errno, unix.EPERM)
	wantErrno(t, "nobody removes trusted.secret", e.RemoveXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: f.Handle, Name: "trusted.secret"}).Errno, unix.EPERM)
	wantErrno(t, "nobody sets security.x", e.SetXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: f.Handle, Name: "security.x", Value: []byte("y")}).Errno, unix.EPERM)
	if rep := e.SetXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: f.Handle, Name: "user.mine", Value: []byte("y")}); rep.Errno != 0 {
		t.Errorf("nobody sets user.mine on its writable file: %v", unix.Errno(rep.Errno))
	}
	if rep := e.GetXattr(op(root), &pb.XattrRequest{Caller: root, Handle: f.Handle, Name: "trusted.secret", Size: 64}); rep.Errno != 0 || string(rep.Value) != "root only" {
		t.Errorf("root reads trusted.secret: %q %v", rep.Value, unix.Errno(rep.Errno))
	}
	l := lookup(t, e, nobody, top.Handle, "l")
	if rep := e.ListXattr(op(nobody), &pb.XattrRequest{Caller: nobody, Handle: l.Handle, Size: 1024}); rep.Errno != 0 || len(rep.Value) != 0 {
		t.Errorf("a link lists %q (%v), want nothing", rep.Value, unix.Errno(rep.Errno))
	}
}
