// Package cfsmount is a node's FUSE mount of a cfsd export (go-fuse):
// every operation of the kernel goes to the export's server over the peer
// protocol, for the caller the kernel names (uid, gid, and the
// supplementary groups read from /proc/<pid>/status), with the server's
// handles as the identity of each inode.
//
// Coherence, until the dlmd-locked caches of package coherence are wired
// in, is NFS's close-to-open: attributes and names are never cached
// (every stat and path walk asks the server), the page cache is dropped
// at each open and writes go through to the server at once, so what one
// node wrote and closed is what another node's next open reads. A file
// opened O_APPEND bypasses the page cache altogether (its writes land at
// the server's end of file, not at this node's idea of it).
//
// Every request has a deadline (Options.Timeout): a server that does not
// answer in time fails the operation with EIO rather than hanging its
// caller; the kernel's own interrupt (a signal to the caller) cancels it
// too.
package cfsmount

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options say what to mount and how.
type Options struct {
	// Export is the export's name on its server.
	Export string
	// Client reaches the export's server.
	Client pb.CfsPeerClient
	// Timeout bounds each request (cfsd.timeout); 0 means 10 s.
	Timeout time.Duration
	// Name is shown as the mount's source (default "cfs:<export>").
	Name string
	// OnError is told of each request that failed for a reason other
	// than the file system's own answer (the server unreachable, the
	// export gone); may be nil.
	OnError func(error)
}

// Mount mounts the export on dir (which must exist) and returns the
// FUSE server: Unmount it, then Wait.
func Mount(dir string, o Options) (*fuse.Server, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Name == "" {
		o.Name = "cfs:" + o.Export
	}
	m := &mount{export: o.Export, c: o.Client, timeout: o.Timeout, onError: o.OnError}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	rep, err := m.c.Root(ctx, &pb.RootRequest{Export: o.Export, Caller: &pb.Caller{}})
	if err != nil {
		return nil, fmt.Errorf("cfs: mount %s on %s: %w", o.Export, dir, err)
	}
	if rep.Errno != 0 {
		return nil, fmt.Errorf("cfs: mount %s on %s: the server: %w", o.Export, dir, syscall.Errno(rep.Errno))
	}
	root := &node{m: m, h: rep.Handle}
	zero := time.Duration(0)
	srv, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:  true,
			FsName:      o.Name,
			Name:        "cfs",
			DirectMount: true,
			// No fallback to the setuid fusermount3: it cannot work
			// under the unit's NoNewPrivileges, and it would hide why
			// mount(2) failed.
			DirectMountStrict:  true,
			MaxWrite:           1 << 20,
			DisableReadDirPlus: true,
			// The kernel checks the mode bits against the server's
			// attributes as for a local file system; the server checks
			// again as the caller.
			Options: []string{"default_permissions"},
			// POSIX ACLs: the kernel checks them too (reading them from
			// the server), not the mode bits alone.
			EnableAcl: true,
			// The page cache is dropped at each open (no
			// FOPEN_KEEP_CACHE), not whenever the attributes, asked
			// for at every read with no attribute cache, are read.
			ExplicitDataCacheControl: true,
			// The server clears set-user-ID and set-group-ID bits, as
			// its kernel does for a write, truncate or chown done as
			// the caller: the client's kernel would instead send a
			// chmod, which a caller who does not own the file may not do.
			ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2,
		},
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		// A mode of 0000 is the file's mode, not "unset".
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: rep.Attr.GetIno(), Gen: gen(rep.Handle)},
	})
	if err != nil {
		return nil, fmt.Errorf("cfs: mount %s on %s: %w", o.Export, dir, err)
	}
	return srv, nil
}

type mount struct {
	export  string
	c       pb.CfsPeerClient
	timeout time.Duration
	onError func(error)
}

// gen tells apart two files that had the same inode number one after
// the other (a number the file system reused): their handles differ.
func gen(h []byte) uint64 {
	f := fnv.New64a()
	f.Write(h)
	return f.Sum64()
}

// caller is the protocol's caller for the process the kernel names.
func caller(ctx context.Context) *pb.Caller {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return &pb.Caller{Uid: 65534, Gid: 65534}
	}
	return &pb.Caller{Uid: c.Uid, Gid: c.Gid, Groups: groupsOf(c.Pid)}
}

// groupsOf reads a process's supplementary groups; none when it is gone
// (or the kernel sent no pid), so the server checks only uid and gid.
func groupsOf(pid uint32) []uint32 {
	if pid == 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil
	}
	return ParseGroups(string(b))
}

// ParseGroups reads the Groups line of a /proc/<pid>/status text.
func ParseGroups(status string) []uint32 {
	for line := range strings.SplitSeq(status, "\n") {
		v, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var gs []uint32
		for _, f := range strings.Fields(v) {
			g, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return nil
			}
			gs = append(gs, uint32(g))
		}
		return gs
	}
	return nil
}

// reply is what every reply of the protocol has: the file system's
// errno, 0 for success.
type reply interface{ GetErrno() int32 }

// do runs one request with the mount's deadline and returns its reply
// and its errno: the file system's answer, or EIO for a failure of the
// transport (EINTR when the caller's signal cancelled it).
func do[Q any, P reply](m *mount, ctx context.Context, call func(context.Context, Q, ...grpc.CallOption) (P, error), req Q) (P, syscall.Errno) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	rep, err := call(ctx, req)
	if err == nil {
		return rep, syscall.Errno(rep.GetErrno())
	}
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return rep, syscall.EINTR
	}
	if m.onError != nil {
		m.onError(fmt.Errorf("cfs %s: %w", m.export, err))
	}
	return rep, syscall.EIO
}

func setAttr(out *fuse.Attr, a *pb.Attr) {
	out.Ino = a.GetIno()
	out.Mode = a.GetMode()
	out.Nlink = a.GetNlink()
	out.Owner = fuse.Owner{Uid: a.GetUid(), Gid: a.GetGid()}
	out.Rdev = uint32(a.GetRdev())
	out.Size = a.GetSize()
	out.Blocks = a.GetBlocks()
	out.Blksize = a.GetBlksize()
	set := func(ns int64, sec *uint64, nsec *uint32) {
		// Floor division: a time before 1970 is seconds below zero and
		// nanoseconds above it, as the kernel keeps it.
		s, n := ns/1e9, ns%1e9
		if n < 0 {
			s, n = s-1, n+1e9
		}
		*sec, *nsec = uint64(s), uint32(n)
	}
	set(a.GetAtimeNs(), &out.Atime, &out.Atimensec)
	set(a.GetMtimeNs(), &out.Mtime, &out.Mtimensec)
	set(a.GetCtimeNs(), &out.Ctime, &out.Ctimensec)
}
