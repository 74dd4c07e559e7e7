package cfsmount

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
)

// node is one inode of the mount: the server's handle of its file.
type node struct {
	fs.Inode
	m *mount
	h []byte
}

var (
	_ fs.NodeLookuper      = (*node)(nil)
	_ fs.NodeGetattrer     = (*node)(nil)
	_ fs.NodeSetattrer     = (*node)(nil)
	_ fs.NodeReadlinker    = (*node)(nil)
	_ fs.NodeReaddirer     = (*node)(nil)
	_ fs.NodeOpener        = (*node)(nil)
	_ fs.NodeCreater       = (*node)(nil)
	_ fs.NodeMkdirer       = (*node)(nil)
	_ fs.NodeMknoder       = (*node)(nil)
	_ fs.NodeSymlinker     = (*node)(nil)
	_ fs.NodeLinker        = (*node)(nil)
	_ fs.NodeUnlinker      = (*node)(nil)
	_ fs.NodeRmdirer       = (*node)(nil)
	_ fs.NodeRenamer       = (*node)(nil)
	_ fs.NodeStatfser      = (*node)(nil)
	_ fs.NodeGetxattrer    = (*node)(nil)
	_ fs.NodeListxattrer   = (*node)(nil)
	_ fs.NodeSetxattrer    = (*node)(nil)
	_ fs.NodeRemovexattrer = (*node)(nil)
)

// child makes (or finds) the inode of an entry the server returned.
func (n *node) child(ctx context.Context, e *pb.Entry, out *fuse.EntryOut) *fs.Inode {
	setAttr(&out.Attr, e.Attr)
	return n.NewInode(ctx, &node{m: n.m, h: e.Handle}, fs.StableAttr{Mode: e.Attr.GetMode(), Ino: e.Attr.GetIno(), Gen: gen(e.Handle)})
}

func (n *node) entry(ctx context.Context, e *pb.Entry, errno syscall.Errno, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno != 0 {
		return nil, errno
	}
	return n.child(ctx, e, out), 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, errno := do(n.m, ctx, n.m.c.Lookup, &pb.NameRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name})
	return n.entry(ctx, e, errno, out)
}

func attrOut(rep *pb.AttrReply, errno syscall.Errno, out *fuse.AttrOut) syscall.Errno {
	if errno == 0 {
		setAttr(&out.Attr, rep.Attr)
	}
	return errno
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	rep, errno := do(n.m, ctx, n.m.c.GetAttr, &pb.HandleRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h})
	return attrOut(rep, errno, out)
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	req := &pb.SetAttrRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h}
	if fl, ok := f.(*file); ok {
		req.Fh = fl.fh
	}
	if m, ok := in.GetMode(); ok {
		req.Mode = &m
	}
	if u, ok := in.GetUID(); ok {
		req.Uid = &u
	}
	if g, ok := in.GetGID(); ok {
		req.Gid = &g
	}
	if s, ok := in.GetSize(); ok {
		req.Size = &s
	}
	now := int64(-1)
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		req.AtimeNs = &now
	} else if t, ok := in.GetATime(); ok {
		ns := t.UnixNano()
		req.AtimeNs = &ns
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		req.MtimeNs = &now
	} else if t, ok := in.GetMTime(); ok {
		ns := t.UnixNano()
		req.MtimeNs = &ns
	}
	rep, errno := do(n.m, ctx, n.m.c.SetAttr, req)
	return attrOut(rep, errno, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	rep, errno := do(n.m, ctx, n.m.c.Readlink, &pb.HandleRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h})
	if errno != 0 {
		return nil, errno
	}
	return rep.Target, 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	d := &dirStream{n: n, caller: caller(ctx), more: true}
	d.list = append(d.list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR}, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR})
	if errno := d.fetch(ctx); errno != 0 {
		return nil, errno
	}
	return d, 0
}

// dirStream lists a directory a page at a time, as the kernel reads it.
type dirStream struct {
	n      *node
	caller *pb.Caller
	list   []fuse.DirEntry
	cookie uint64
	more   bool
	errno  syscall.Errno
}

func (d *dirStream) fetch(ctx context.Context) syscall.Errno {
	rep, errno := do(d.n.m, ctx, d.n.m.c.ReadDir, &pb.ReadDirRequest{Export: d.n.m.export, Caller: d.caller, Handle: d.n.h, Cookie: d.cookie})
	if errno != 0 {
		return errno
	}
	for _, e := range rep.Entries {
		d.list = append(d.list, fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode})
	}
	d.cookie, d.more = rep.Cookie, rep.More
	return 0
}

func (d *dirStream) HasNext() bool {
	// A later page is asked for as the kernel reads on (its own
	// READDIR's context is not this stream's): with the mount's deadline.
	for len(d.list) == 0 && d.more && d.errno == 0 {
		d.errno = d.fetch(context.Background())
	}
	return len(d.list) > 0 || d.errno != 0
}

func (d *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	if len(d.list) == 0 {
		errno := d.errno
		d.errno = 0
		d.more = false
		return fuse.DirEntry{}, errno
	}
	e := d.list[0]
	d.list = d.list[1:]
	return e, 0
}

func (d *dirStream) Close() {}

// openFlags says how the kernel is to cache an open file: never across
// opens (close-to-open), and not at all for O_APPEND, whose writes land
// where the server's end of file is.
func openFlags(flags uint32) uint32 {
	if flags&syscall.O_APPEND != 0 {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	rep, errno := do(n.m, ctx, n.m.c.Open, &pb.OpenRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h, Flags: flags})
	if errno != 0 {
		return nil, 0, errno
	}
	return &file{m: n.m, fh: rep.Fh}, openFlags(flags), 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	rep, errno := do(n.m, ctx, n.m.c.Create, &pb.CreateRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name, Flags: flags, Mode: mode})
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return n.child(ctx, rep.Entry, out), &file{m: n.m, fh: rep.Fh}, openFlags(flags), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, errno := do(n.m, ctx, n.m.c.Mkdir, &pb.MakeRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name, Mode: mode})
	return n.entry(ctx, e, errno, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, errno := do(n.m, ctx, n.m.c.Mknod, &pb.MakeRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name, Mode: mode, Rdev: uint64(dev)})
	return n.entry(ctx, e, errno, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, errno := do(n.m, ctx, n.m.c.Symlink, &pb.SymlinkRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name, Target: []byte(target)})
	return n.entry(ctx, e, errno, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	e, errno := do(n.m, ctx, n.m.c.Link, &pb.LinkRequest{Export: n.m.export, Caller: caller(ctx), Handle: t.h, Dir: n.h, Name: name})
	return n.entry(ctx, e, errno, out)
}

// errnoOf is the outcome of a request whose reply is its errno alone.
func errnoOf(_ *pb.Errno, errno syscall.Errno) syscall.Errno { return errno }

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return errnoOf(do(n.m, ctx, n.m.c.Unlink, &pb.NameRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name}))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return errnoOf(do(n.m, ctx, n.m.c.Rmdir, &pb.NameRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name}))
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	to, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	return errnoOf(do(n.m, ctx, n.m.c.Rename, &pb.RenameRequest{Export: n.m.export, Caller: caller(ctx), Dir: n.h, Name: name, NewDir: to.h, NewName: newName, Flags: flags}))
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	rep, errno := do(n.m, ctx, n.m.c.Statfs, &pb.HandleRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h})
	if errno != 0 {
		return errno
	}
	*out = fuse.StatfsOut{Blocks: rep.Blocks, Bfree: rep.Bfree, Bavail: rep.Bavail, Files: rep.Files, Ffree: rep.Ffree, Bsize: rep.Bsize, NameLen: rep.Namelen, Frsize: rep.Frsize}
	return 0
}

// xattrRead answers getxattr and listxattr: with an empty dest, the size.
func xattrRead(rep *pb.XattrReply, errno syscall.Errno, dest []byte) (uint32, syscall.Errno) {
	if errno != 0 {
		return 0, errno
	}
	if len(dest) == 0 {
		return rep.Size, 0
	}
	if len(rep.Value) > len(dest) {
		return uint32(len(rep.Value)), syscall.ERANGE
	}
	return uint32(copy(dest, rep.Value)), 0
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	rep, errno := do(n.m, ctx, n.m.c.GetXattr, &pb.XattrRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h, Name: attr, Size: uint32(len(dest))})
	return xattrRead(rep, errno, dest)
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	rep, errno := do(n.m, ctx, n.m.c.ListXattr, &pb.XattrRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h, Size: uint32(len(dest))})
	return xattrRead(rep, errno, dest)
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return errnoOf(do(n.m, ctx, n.m.c.SetXattr, &pb.XattrRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h, Name: attr, Value: data, Flags: flags}))
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return errnoOf(do(n.m, ctx, n.m.c.RemoveXattr, &pb.XattrRequest{Export: n.m.export, Caller: caller(ctx), Handle: n.h, Name: attr}))
}
