// Package procfs is vprocd's FUSE view of the cluster's processes,
// mounted at /cluster/proc:
//
//	/cluster/proc/<cpid>/status   /proc/<pid>/status on the node it runs on
//	/cluster/proc/<cpid>/stat     /proc/<pid>/stat
//	/cluster/proc/<cpid>/cmdline  /proc/<pid>/cmdline
//	/cluster/proc/<cpid>/environ  /proc/<pid>/environ, for its owner and root only
//	/cluster/proc/<cpid>/node     the node it runs on, "3\n"
//	/cluster/proc/<cpid>/goto     write-only: `echo 2 > goto` moves it to node 2
//
// so `ls /cluster/proc`, `cat /cluster/proc/<cpid>/status` and scripts
// work with standard tools. It serves what a Provider gives: the vprocd
// shell backs it with the cluster-wide table, tests with a map.
//
// # Freshness
//
// Processes start, exit and change owner (setuid) all the time, so nothing
// is cached by the kernel: the entry, attribute and negative timeouts are
// zero (every path lookup and stat asks the Provider again, as /proc
// revalidates each lookup), files are opened with direct I/O (no page
// cache, so reads never return an earlier open's content and the size 0
// that stat reports, as /proc's does, does not cut reads short), and a
// file's content is fetched once at open and served from that snapshot
// until close (as /proc's seq files do). Listing the directory asks the
// Provider for the list only: READDIRPLUS is off, so a plain `ls` costs
// one List, not one Get per process.
//
// # Access
//
// Directories are 0555 and files 0444 owned by the process's uid and gid,
// environ 0400, as in /proc. The kernel does not check these (no
// default_permissions): Open does. environ is opened only by a caller
// (the uid the kernel gives in the FUSE request) that is root or the
// process's owner; anyone else gets EACCES, as /proc's ptrace check would
// deny a different user. goto is 0200, owned by the process's uid, as
// /proc's write-only files; it is the only file that takes writes: every
// other file's Open refuses anything but O_RDONLY with EROFS, and so do
// Setattr on it and the directories' Create, Mkdir, Unlink and the like.
// The mount is nosuid, nodev and noexec, not read-only (goto is written).
//
// # Moving a process: goto
//
// `echo NODE > /cluster/proc/<cpid>/goto` moves the process to node NODE,
// as `ssi migrate CPID NODE` would, for the writing user (the uid the
// kernel gives in the FUSE request): its owner or root. Open for writing
// checks the owner first; the Provider's Goto checks it again where the
// process runs. Each write is one request, parsed strictly (ParseNode):
// a node number 1..511 in decimal, no sign, no leading zero, no spaces,
// at most one trailing newline. The write returns when the move is done
// (echo returns then), with the number of bytes written, or fails with:
//
//	EACCES  open: the caller is neither the process's owner nor root,
//	        or opens goto for reading
//	EPERM   write: the node the process runs on refused the caller
//	        (not its owner nor root)
//	ENOENT  the process is gone
//	EINVAL  the text is not a node number, or the process cannot move
//	        (not started migratable, no mechanism can move it, no such
//	        node, or it is already there)
//	EBUSY   a move of it is already under way, its node takes no more
//	        moves now, or a node it needs cannot be reached: try again
//	EINTR   the write was interrupted (the move may go on)
//	EIO     the move failed: the process stays where it was (vprocd's
//	        log says why)
//
// `echo >` opens with O_TRUNC: the truncation (a Setattr of size 0) is
// accepted on goto, for whoever may write it, and changes nothing.
package procfs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

// ErrNotFound is what a Provider's Get wraps for a cpid with no process;
// an error proctable.Gone reports (the process exited) counts the same.
// Both are ENOENT to the caller.
var ErrNotFound = errors.New("procfs: no such process")

// What a Provider's Goto wraps to say why a move was refused; see the
// package doc for the errnos. Any other error is EIO: the move failed.
var (
	// ErrNotOwner: the caller is neither the process's owner nor root.
	ErrNotOwner = errors.New("procfs: not the process's owner")
	// ErrCannotMove: the process cannot move there (not migratable, no
	// such node, already there).
	ErrCannotMove = errors.New("procfs: the process cannot move")
	// ErrBusy: a move is under way, or no more moves are taken now.
	ErrBusy = errors.New("procfs: busy")
)

// Proc is one process as the Provider gives it: its row (owner, node)
// and the texts of its files as read on the node it runs on.
type Proc struct {
	Row   proctable.Row
	Files proctable.Files
}

// Provider is where the view's contents come from. Its methods are called
// from FUSE request goroutines, concurrently; ctx is cancelled when the
// kernel interrupts the request.
type Provider interface {
	// List returns the processes of the cluster: a directory for each
	// CPID (a cpid seen twice, mid-move, is listed once).
	List(ctx context.Context) ([]proctable.Row, error)
	// Get returns one process, fresh: it is called at every lookup, stat
	// and open.
	Get(ctx context.Context, c cpid.CPID) (Proc, error)
	// Goto moves process c to node for uid caller (its owner or root)
	// and returns when the move is done: the write of goto.
	Goto(ctx context.Context, c cpid.CPID, caller, node uint32) error
}

// Options tune Mount.
type Options struct {
	// OnError, when set, is told of every Provider error other than a
	// process not found (those are EIO to the caller).
	OnError func(error)
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
}

// The files of a process directory, in listing order.
var fileNames = []string{"cmdline", "environ", "goto", "node", "stat", "status"}

const (
	environ  = "environ"
	gotoFile = "goto"
)

// Mount mounts the view of p on dir (which must exist) and serves it
// until the returned server is unmounted (server.Unmount(), then
// server.Wait()). It needs root (or CAP_SYS_ADMIN): it mounts with
// mount(2) itself, nosuid, nodev, noexec (not read-only: goto is
// written), and with allow_other, since every user of the node reads
// /cluster/proc (Open checks access).
func Mount(dir string, p Provider, o Options) (*fuse.Server, error) {
	zero := time.Duration(0)
	opts := &fusefs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:         true,
			DirectMount:        true,
			DirectMountFlags:   syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC,
			FsName:             "openssi",
			Name:               "vprocfs",
			DisableReadDirPlus: true,
			Debug:              o.Debug,
		},
		// Zero: see the package doc, Freshness.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
	}
	srv, err := fusefs.Mount(dir, NewRoot(p, o.OnError), opts)
	if err != nil {
		return nil, errors.New("procfs: mount " + dir + ": " + err.Error())
	}
	closeOnExecFUSE()
	return srv, nil
}

// closeOnExecFUSE marks this process's /dev/fuse descriptors
// close-on-exec. go-fuse opens /dev/fuse without O_CLOEXEC, and vprocd
// starts programs: each inherited the mount's connection, with which a
// user's program could read the kernel's requests for /cluster/proc and
// answer them as the filesystem (and which CRIU will not dump). The
// mount comes before vprocd serves its first exec.
func closeOnExecFUSE() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

// NewRoot is the view's root directory, for fusefs.Mount with options of
// one's own; Mount is the usual way.
func NewRoot(p Provider, onError func(error)) fusefs.InodeEmbedder {
	return &root{v: &view{p: p, onError: onError}}
}

// view is what every node of the tree shares.
type view struct {
	p       Provider
	onError func(error)
}

// get fetches process c, turning errors into errnos.
func (v *view) get(ctx context.Context, c cpid.CPID) (Proc, syscall.Errno) {
	proc, err := v.p.Get(ctx, c)
	if err != nil {
		return Proc{}, v.errno(err)
	}
	return proc, 0
}

func (v *view) errno(err error) syscall.Errno {
	switch {
	case errors.Is(err, ErrNotFound) || proctable.Gone(err):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, ErrNotOwner):
		return syscall.EPERM
	case errors.Is(err, ErrCannotMove):
		return syscall.EINVAL
	case errors.Is(err, ErrBusy):
		return syscall.EBUSY
	}
	if v.onError != nil {
		v.onError(err)
	}
	return syscall.EIO
}

// Inode numbers: the root is 1; a process directory is its cpid << 3,
// its files that | 1 + their index, so an inode names one cpid's one
// file for as long as the cpid names one process.
func dirIno(c cpid.CPID) uint64 { return uint64(c) << 3 }

func fileIno(c cpid.CPID, i int) uint64 { return dirIno(c) | uint64(1+i) }

// attr fills a's ownership from the process and its mode.
func attr(a *fuse.Attr, r proctable.Row, mode uint32) {
	a.Mode = mode
	a.Uid, a.Gid = r.UID, r.GID
	a.Nlink = 1
	if mode&syscall.S_IFDIR != 0 {
		a.Nlink = 2
	}
	t := r.Start
	if !t.IsZero() {
		a.SetTimes(&t, &t, &t)
	}
}

// readOnlyDir refuses, with EROFS, every change of a directory: the mount
// is not read-only (goto is written), so the view says it itself.
type readOnlyDir struct{}

var (
	_ fusefs.NodeSetattrer = readOnlyDir{}
	_ fusefs.NodeCreater   = readOnlyDir{}
	_ fusefs.NodeMkdirer   = readOnlyDir{}
	_ fusefs.NodeMknoder   = readOnlyDir{}
	_ fusefs.NodeUnlinker  = readOnlyDir{}
	_ fusefs.NodeRmdirer   = readOnlyDir{}
	_ fusefs.NodeRenamer   = readOnlyDir{}
	_ fusefs.NodeLinker    = readOnlyDir{}
	_ fusefs.NodeSymlinker = readOnlyDir{}
)

func (readOnlyDir) Setattr(context.Context, fusefs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (readOnlyDir) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (readOnlyDir) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }

func (readOnlyDir) Rmdir(context.Context, string) syscall.Errno { return syscall.EROFS }

func (readOnlyDir) Rename(context.Context, string, fusefs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}

func (readOnlyDir) Link(context.Context, fusefs.InodeEmbedder, string, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Symlink(context.Context, string, string, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

type root struct {
	fusefs.Inode
	readOnlyDir
	v *view
}

var (
	_ fusefs.NodeReaddirer = (*root)(nil)
	_ fusefs.NodeLookuper  = (*root)(nil)
	_ fusefs.NodeGetattrer = (*root)(nil)
)

func (r *root) Getattr(ctx context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	return 0
}

func (r *root) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	rows, err := r.v.p.List(ctx)
	if err != nil {
		return nil, r.v.errno(err)
	}
	cs := make([]cpid.CPID, 0, len(rows))
	for _, row := range rows {
		if row.CPID.Valid() {
			cs = append(cs, row.CPID)
		}
	}
	slices.Sort(cs)
	cs = slices.Compact(cs)
	ents := make([]fuse.DirEntry, len(cs))
	for i, c := range cs {
		ents[i] = fuse.DirEntry{Name: c.String(), Mode: syscall.S_IFDIR, Ino: dirIno(c)}
	}
	return fusefs.NewListDirStream(ents), 0
}

func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	c, err := cpid.Parse(name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	proc, errno := r.v.get(ctx, c)
	if errno != 0 {
		return nil, errno
	}
	attr(&out.Attr, proc.Row, syscall.S_IFDIR|0o555)
	return r.NewInode(ctx, &procDir{v: r.v, c: c}, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: dirIno(c)}), 0
}

// procDir is /cluster/proc/<cpid>.
type procDir struct {
	fusefs.Inode
	readOnlyDir
	v *view
	c cpid.CPID
}

var (
	_ fusefs.NodeReaddirer = (*procDir)(nil)
	_ fusefs.NodeLookuper  = (*procDir)(nil)
	_ fusefs.NodeGetattrer = (*procDir)(nil)
)

func (d *procDir) Getattr(ctx context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	proc, errno := d.v.get(ctx, d.c)
	if errno != 0 {
		return errno
	}
	attr(&out.Attr, proc.Row, syscall.S_IFDIR|0o555)
	return 0
}

func (d *procDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if _, errno := d.v.get(ctx, d.c); errno != 0 {
		return nil, errno
	}
	ents := make([]fuse.DirEntry, len(fileNames))
	for i, n := range fileNames {
		ents[i] = fuse.DirEntry{Name: n, Mode: syscall.S_IFREG, Ino: fileIno(d.c, i)}
	}
	return fusefs.NewListDirStream(ents), 0
}

func (d *procDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	i := slices.Index(fileNames, name)
	if i < 0 {
		return nil, syscall.ENOENT
	}
	proc, errno := d.v.get(ctx, d.c)
	if errno != 0 {
		return nil, errno
	}
	f := &file{v: d.v, c: d.c, name: name}
	attr(&out.Attr, proc.Row, f.mode())
	return d.NewInode(ctx, f, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: fileIno(d.c, i)}), 0
}

// file is /cluster/proc/<cpid>/<name>.
type file struct {
	fusefs.Inode
	v    *view
	c    cpid.CPID
	name string
}

var (
	_ fusefs.NodeGetattrer = (*file)(nil)
	_ fusefs.NodeOpener    = (*file)(nil)
	_ fusefs.NodeSetattrer = (*file)(nil)
)

func (f *file) mode() uint32 {
	switch f.name {
	case environ:
		return syscall.S_IFREG | 0o400
	case gotoFile:
		return syscall.S_IFREG | 0o200
	}
	return syscall.S_IFREG | 0o444
}

func (f *file) Getattr(ctx context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	proc, errno := f.v.get(ctx, f.c)
	if errno != 0 {
		return errno
	}
	attr(&out.Attr, proc.Row, f.mode())
	return 0
}

// Open fetches the file's content, once, for this open.
func (f *file) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if f.name == gotoFile {
		return f.openGoto(ctx, flags)
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	proc, errno := f.v.get(ctx, f.c)
	if errno != 0 {
		return nil, 0, errno
	}
	var data []byte
	switch f.name {
	case "cmdline":
		data = proc.Files.Cmdline
	case environ:
		caller, ok := fuse.FromContext(ctx)
		if !ok || !MayReadEnviron(caller.Uid, proc.Row.UID) {
			return nil, 0, syscall.EACCES
		}
		data = proc.Files.Environ
	case "node":
		data = []byte(strconv.FormatUint(uint64(proc.Row.Node), 10) + "\n")
	case "stat":
		data = proc.Files.Stat
	case "status":
		data = proc.Files.Status
	}
	return &handle{data: data}, fuse.FOPEN_DIRECT_IO, 0
}

// openGoto opens goto for writing, for the process's owner or root.
func (f *file) openGoto(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_WRONLY {
		return nil, 0, syscall.EACCES
	}
	if errno := f.mayWriteGoto(ctx); errno != 0 {
		return nil, 0, errno
	}
	return &gotoHandle{v: f.v, c: f.c}, fuse.FOPEN_DIRECT_IO, 0
}

// mayWriteGoto checks the caller of ctx may write goto.
func (f *file) mayWriteGoto(ctx context.Context) syscall.Errno {
	proc, errno := f.v.get(ctx, f.c)
	if errno != 0 {
		return errno
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok || !MayMove(caller.Uid, proc.Row.UID) {
		return syscall.EACCES
	}
	return 0
}

// truncOnly is what a Setattr of `echo >`'s O_TRUNC may set: the size
// (to 0) and the times the truncation touches.
const truncOnly = fuse.FATTR_SIZE | fuse.FATTR_FH | fuse.FATTR_LOCKOWNER |
	fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW | fuse.FATTR_CTIME | fuse.FATTR_KILL_SUIDGID

// Setattr accepts the truncation of goto to size 0 (a no-op, for `echo
// >`'s O_TRUNC), from whoever may write it; it refuses any other change
// of any file with EROFS.
func (f *file) Setattr(ctx context.Context, _ fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, hasSize := in.GetSize()
	if f.name != gotoFile || in.Valid&^truncOnly != 0 || !hasSize || size != 0 {
		return syscall.EROFS
	}
	if errno := f.mayWriteGoto(ctx); errno != 0 {
		return errno
	}
	return f.Getattr(ctx, nil, out)
}

// gotoHandle is goto opened for writing.
type gotoHandle struct {
	v *view
	c cpid.CPID
}

var _ fusefs.FileWriter = (*gotoHandle)(nil)

// Write moves the process to the node written, as the writing user, and
// returns when the move is done.
func (h *gotoHandle) Write(ctx context.Context, data []byte, _ int64) (uint32, syscall.Errno) {
	node, err := ParseNode(data)
	if err != nil {
		return 0, syscall.EINVAL
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return 0, syscall.EACCES
	}
	if err := h.v.p.Goto(ctx, h.c, caller.Uid, node); err != nil {
		return 0, h.v.errno(err)
	}
	return uint32(len(data)), 0
}

// ErrNodeText is what ParseNode returns for a text that is not a node
// number.
var ErrNodeText = errors.New("procfs: not a node number (1..511, then at most one newline)")

// ParseNode parses what is written to goto: a node number 1..cpid.MaxNode
// in decimal digits (no sign, no leading zero, no spaces), then at most
// one newline.
func ParseNode(b []byte) (uint32, error) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if len(b) == 0 || len(b) > 3 || b[0] == '0' {
		return 0, ErrNodeText
	}
	var n uint32
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrNodeText
		}
		n = n*10 + uint32(c-'0')
	}
	if n > cpid.MaxNode {
		return 0, ErrNodeText
	}
	return n, nil
}

// MayMove reports whether the caller uid may move a process owned by
// owner: root, or the owner (as `ssi migrate`).
func MayMove(caller, owner uint32) bool { return caller == 0 || caller == owner }

// MayReadEnviron reports whether the caller uid may read the environment
// of a process owned by owner: root, or the owner.
func MayReadEnviron(caller, owner uint32) bool { return caller == 0 || caller == owner }

// handle is one open file: the content fetched at open.
type handle struct{ data []byte }

var _ fusefs.FileReader = (*handle)(nil)

func (h *handle) Read(_ context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(h.data)))
	return fuse.ReadResultData(h.data[off:end]), 0
}
