// Package export serves one exported directory to the nodes that mount
// it: the operations of the peer protocol (proto/cfspeer/v1) done on the
// local file system, each with the file-system identity of the client's
// caller, so the kernel of the serving node checks permissions as for a
// local process and new files belong to their creator.
//
// Files are named by handles (package handle): the kernel's own, signed
// with the export's key. A handle is opened as root with
// open_by_handle_at(2) (which needs CAP_DAC_READ_SEARCH, a capability a
// caller's fsuid drops), then every operation runs as the caller on that
// descriptor: *at(2) calls on a single name, which never follow a
// symbolic link, or a reopen through /proc/self/fd, which checks the
// caller's permission like an open(2). The server never resolves a path
// a client sent, so a symbolic link in an export (say to /etc) is only
// text to it. As with NFS exports without subtree checking, a handle of a
// file stays valid after the file is renamed within the file system; a
// handle is made only by a lookup inside the export.
//
// Open files are kept per client node, at most Limits.FilesPerClient
// each, and are closed when that client's node leaves (CloseClient).
package export

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/openssi/openssi/daemons/cfsd/handle"
	"github.com/openssi/openssi/internal/fsident"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"golang.org/x/sys/unix"
)

// Limits bound what the clients can hold.
type Limits struct {
	// FilesPerClient is the most files one client node may have open.
	FilesPerClient int
	// Files is the most files all clients together may have open (well
	// below the process's descriptors, which the server needs too).
	Files int
	// MaxIO is the largest read or write in one request.
	MaxIO int
}

// DefaultLimits are the limits of a cfsd (its unit allows 65536
// descriptors).
var DefaultLimits = Limits{FilesPerClient: 8192, Files: 32768, MaxIO: 1 << 20}

// Export is one exported directory being served. Its methods are safe
// for concurrent use.
type Export struct {
	name   string
	root   int // the exported directory, open_by_handle_at(2)'s mount fd (which may not be O_PATH)
	dev    uint64
	signer *handle.Signer
	limits Limits

	// life is held (read) by every operation and taken by Close, so
	// that root is never closed under one.
	life   sync.RWMutex
	closed bool

	mu      sync.Mutex
	files   map[uint64]*openFile
	next    uint64
	byNode  map[string]int
	closing bool
}

type openFile struct {
	fd     int
	client string
}

// Open serves dir as the export name, its handles signed with key. It
// sets the process's umask to 0 (the umask is the whole process's): a
// caller's own umask was applied by its kernel, and the server's must
// not mask the mode again.
func Open(name, dir string, key []byte, limits Limits) (*Export, error) {
	if len(key) != handle.KeySize {
		return nil, fmt.Errorf("export %s: a key of %d bytes, not %d", name, len(key), handle.KeySize)
	}
	unix.Umask(0)
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("export %s: open %s: %w", name, dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		unix.Close(root)
		return nil, fmt.Errorf("export %s: stat %s: %w", name, dir, err)
	}
	rootHandle, _, err := unix.NameToHandleAt(root, "", unix.AT_EMPTY_PATH)
	if err != nil {
		unix.Close(root)
		return nil, fmt.Errorf("export %s: the file system of %s cannot name files by handle (%v): export a directory on ext4, xfs, btrfs or tmpfs", name, dir, err)
	}
	// The handles are valid for this export of this directory only.
	signer, err := handle.NewSigner(fmt.Sprintf("%s\x00%s\x00%d:%x", name, dir, rootHandle.Type(), rootHandle.Bytes()), key)
	if err != nil {
		unix.Close(root)
		return nil, err
	}
	return &Export{
		name: name, root: root, dev: st.Dev, signer: signer, limits: limits,
		files: map[uint64]*openFile{}, next: rand.Uint64() | 1, byNode: map[string]int{},
	}, nil
}

// Name is the export's name.
func (e *Export) Name() string { return e.name }

// Enter starts an operation on the export; false once it is closed. An
// operation that entered must Leave.
func (e *Export) Enter() bool {
	e.life.RLock()
	if e.closed {
		e.life.RUnlock()
		return false
	}
	return true
}

// Leave ends an operation that entered.
func (e *Export) Leave() { e.life.RUnlock() }

// Close waits for the operations under way, then closes every open file
// and the export.
func (e *Export) Close() error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.mu.Lock()
	e.closing = true
	for fh, f := range e.files {
		unix.Close(f.fd)
		delete(e.files, fh)
	}
	e.mu.Unlock()
	return unix.Close(e.root)
}

// CloseClient closes every file client has open, as when its node
// leaves the cluster; it returns how many.
func (e *Export) CloseClient(client string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for fh, f := range e.files {
		if f.client == client {
			unix.Close(f.fd)
			delete(e.files, fh)
			n++
		}
	}
	delete(e.byNode, client)
	return n
}

// OpenFiles is how many files client has open.
func (e *Export) OpenFiles(client string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byNode[client]
}

// Op is who an operation is for: the client node (from its certificate)
// and its caller (as that node's kernel reported it), and the request's
// context (nil for none): an open whose caller went away meanwhile is
// closed again rather than kept for nobody.
type Op struct {
	Client string
	Cred   fsident.Cred
	Ctx    context.Context
}

// CredOf is the identity of a protocol caller.
func CredOf(c *pb.Caller) fsident.Cred {
	return fsident.Cred{UID: c.GetUid(), GID: c.GetGid(), Groups: c.GetGroups()}
}

// errno is the protocol's number for err.
func errno(err error) int32 {
	var e unix.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return int32(e)
	case errors.Is(err, handle.ErrInvalid):
		return int32(unix.ESTALE)
	default:
		return int32(unix.EIO)
	}
}

// byHandle opens h as root, O_PATH: no permission is checked for that
// (as none is for an NFS file handle); the operation on it is.
func (e *Export) byHandle(h []byte) (int, error) {
	k, err := e.signer.Decode(h)
	if err != nil {
		return -1, err
	}
	fd, err := unix.OpenByHandleAt(e.root, unix.NewFileHandle(k.Type, k.Bytes), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
			// The file was removed (or never was): the handle is stale.
			return -1, unix.ESTALE
		}
		return -1, err
	}
	return fd, nil
}

// as runs op as o's caller on the file h names.
func (e *Export) as(o Op, h []byte, op func(fd int) error) error {
	fd, err := e.byHandle(h)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return e.asCaller(o, fd, op)
}

// asCaller runs op(fd) with o's caller's file-system identity.
func (e *Export) asCaller(o Op, fd int, op func(fd int) error) error {
	var opErr error
	if err := fsident.Do(o.Cred, func() { opErr = op(fd) }); err != nil {
		return fmt.Errorf("export %s: %w", e.name, err)
	}
	return opErr
}

// validName refuses what no client's kernel sends as one name: a client
// names only entries of the directory it names.
func validName(name string) error {
	switch {
	case len(name) > 255:
		return unix.ENAMETOOLONG
	case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
		return unix.EINVAL
	}
	return nil
}

// procPath names the file fd is open on, for the calls that take only
// a path; the kernel follows it to that very file, checking the calling
// thread's permissions as for any path.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// entry is the handle and attributes of the file fd is open on.
func (e *Export) entry(fd int) (*pb.Entry, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Dev != e.dev {
		// Another file system mounted inside the export: its handles
		// would not open through the export's root.
		return nil, unix.EXDEV
	}
	fh, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return nil, err
	}
	h, err := e.signer.Encode(handle.Kernel{Type: fh.Type(), Bytes: fh.Bytes()})
	if err != nil {
		return nil, err
	}
	return &pb.Entry{Handle: h, Attr: attrOf(&st)}, nil
}

// entryAt is the entry of name in the directory dirfd, not following a
// symbolic link.
func (e *Export) entryAt(dirfd int, name string) (*pb.Entry, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return e.entry(fd)
}

func attrOf(st *unix.Stat_t) *pb.Attr {
	return &pb.Attr{
		Ino: st.Ino, Mode: st.Mode, Nlink: uint32(st.Nlink), Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: uint64(st.Size), Blocks: uint64(st.Blocks), Blksize: uint32(st.Blksize),
		AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
	}
}

// addFile keeps fd as an open file of o's client; if o's request was
// cancelled meanwhile (the caller interrupted, the client timed out), no
// answer reaches the client, so the file is closed again.
func (e *Export) addFile(o Op, fd int) (uint64, error) {
	fh, err := e.keep(o.Client, fd)
	if err == nil && o.Ctx != nil && o.Ctx.Err() != nil {
		_ = e.release(o.Client, fh)
		return 0, unix.EINTR
	}
	return fh, err
}

func (e *Export) keep(client string, fd int) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		unix.Close(fd)
		return 0, unix.ESTALE
	}
	if e.byNode[client] >= e.limits.FilesPerClient || len(e.files) >= e.limits.Files {
		unix.Close(fd)
		return 0, unix.EMFILE
	}
	for {
		e.next++
		if e.next != 0 && e.files[e.next] == nil {
			break
		}
	}
	e.files[e.next] = &openFile{fd: fd, client: client}
	e.byNode[client]++
	return e.next, nil
}

// file is the descriptor of client's open file fh; EBADF for a file
// that is not open or another node's.
func (e *Export) file(client string, fh uint64) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.files[fh]
	if f == nil || f.client != client {
		return -1, unix.EBADF
	}
	// A duplicate, so a Release racing with a read cannot close the
	// descriptor under it (or let the number be reused meanwhile).
	return unix.FcntlInt(uintptr(f.fd), unix.F_DUPFD_CLOEXEC, 0)
}

func (e *Export) release(client string, fh uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.files[fh]
	if f == nil || f.client != client {
		return unix.EBADF
	}
	delete(e.files, fh)
	e.byNode[client]--
	return unix.Close(f.fd)
}

// withFile runs op on client's open file fh.
func (e *Export) withFile(client string, fh uint64, op func(fd int) error) error {
	fd, err := e.file(client, fh)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return op(fd)
}

// withFileAs runs op on client's open file fh as o's caller.
func (e *Export) withFileAs(o Op, fh uint64, op func(fd int) error) error {
	return e.withFile(o.Client, fh, func(fd int) error { return e.asCaller(o, fd, op) })
}

var errNoCaller = errors.New("a request without its caller")

// checkCaller refuses a request that does not say whom it is for.
func checkCaller(c *pb.Caller) error {
	if c == nil {
		return errNoCaller
	}
	return nil
}

// fileType is the type bits of the file fd is open on.
func fileType(fd int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Mode & unix.S_IFMT, nil
}

// isLink says whether fd is open on a symbolic link: what must not be
// reopened through /proc (that would follow it on the server).
func isLink(fd int) (bool, error) {
	t, err := fileType(fd)
	return t == unix.S_IFLNK, err
}
