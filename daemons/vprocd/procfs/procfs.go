// Package procfs is vprocd's read-only FUSE view of the cluster's
// processes, mounted at /cluster/proc:
//
//	/cluster/proc/<cpid>/status   /proc/<pid>/status on the node it runs on
//	/cluster/proc/<cpid>/stat     /proc/<pid>/stat
//	/cluster/proc/<cpid>/cmdline  /proc/<pid>/cmdline
//	/cluster/proc/<cpid>/environ  /proc/<pid>/environ, for its owner and root only
//	/cluster/proc/<cpid>/node     the node it runs on, "3\n"
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
// deny a different user. Every write is refused: the mount is read-only
// and Open refuses anything but O_RDONLY with EROFS.
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
var fileNames = []string{"cmdline", "environ", "node", "stat", "status"}

const environ = "environ"

// Mount mounts the view of p on dir (which must exist) and serves it
// until the returned server is unmounted (server.Unmount(), then
// server.Wait()). It needs root (or CAP_SYS_ADMIN): it mounts with
// mount(2) itself, read-only, nosuid, nodev, noexec, and with allow_other,
// since every user of the node reads /cluster/proc (Open checks access).
func Mount(dir string, p Provider, o Options) (*fuse.Server, error) {
	zero := time.Duration(0)
	opts := &fusefs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:         true,
			DirectMount:        true,
			DirectMountFlags:   syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC,
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
	closeDeviceOnExec()
	return srv, nil
}

// closeDeviceOnExec marks this process's descriptors of /dev/fuse
// close-on-exec. go-fuse opens the device without it when it mounts
// itself (DirectMount), so every program vprocd started would hold the
// view's FUSE connection: one could answer the kernel's requests for
// /cluster/proc in the view's place, and CRIU would refuse to move any.
// (A program started between go-fuse's open and this still gets it;
// vprocd mounts before it serves.)
func closeDeviceOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				syscall.CloseOnExec(fd)
			}
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

type root struct {
	fusefs.Inode
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
)

func (f *file) mode() uint32 {
	if f.name == environ {
		return syscall.S_IFREG | 0o400
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
