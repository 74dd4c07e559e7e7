package cfsmount

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
)

// file is a file this node has open on the server.
type file struct {
	m  *mount
	fh uint64
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
)

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	rep, errno := do(f.m, ctx, f.m.c.Read, &pb.ReadRequest{Export: f.m.export, Caller: caller(ctx), Fh: f.fh, Offset: off, Size: uint32(len(dest))})
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(rep.Data), 0
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	rep, errno := do(f.m, ctx, f.m.c.Write, &pb.WriteRequest{Export: f.m.export, Caller: caller(ctx), Fh: f.fh, Offset: off, Data: data})
	if errno != 0 {
		return 0, errno
	}
	return rep.Written, 0
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return errnoOf(do(f.m, ctx, f.m.c.Fsync, &pb.FileRequest{Export: f.m.export, Caller: caller(ctx), Fh: f.fh, Datasync: flags&1 != 0}))
}

// Release closes the server's file. The kernel sends it when the last
// descriptor is closed, after the caller has gone on: it gets its own
// context, since the kernel's is already done.
func (f *file) Release(ctx context.Context) syscall.Errno {
	return errnoOf(do(f.m, context.Background(), f.m.c.Release, &pb.FileRequest{Export: f.m.export, Caller: caller(ctx), Fh: f.fh}))
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return errnoOf(do(f.m, ctx, f.m.c.Allocate, &pb.AllocateRequest{Export: f.m.export, Caller: caller(ctx), Fh: f.fh, Mode: mode, Offset: int64(off), Length: int64(size)}))
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	rep, errno := do(f.m, ctx, f.m.c.Lseek, &pb.LseekRequest{Export: f.m.export, Caller: caller(ctx), Fh: f.fh, Offset: int64(off), Whence: whence})
	if errno != 0 {
		return 0, errno
	}
	return uint64(rep.Offset), 0
}
