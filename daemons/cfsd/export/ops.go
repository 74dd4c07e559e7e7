package export

import (
	"encoding/binary"
	"strings"
	"unsafe"

	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"golang.org/x/sys/unix"
)

// Root is the entry of the export's root directory. A client node asks
// for it when it mounts the export, which it does once: the files its
// previous mount left open (a cfsd that was restarted) are closed.
func (e *Export) Root(o Op, _ *pb.RootRequest) *pb.Entry {
	e.CloseClient(o.Client)
	ent, err := e.entry(e.root)
	if err != nil {
		return &pb.Entry{Errno: errno(err)}
	}
	return ent
}

// Lookup is the entry of a name in a directory, looked up as the caller
// (who needs search permission on the directory).
func (e *Export) Lookup(o Op, r *pb.NameRequest) *pb.Entry {
	if err := validName(r.Name); err != nil {
		return &pb.Entry{Errno: errno(err)}
	}
	var ent *pb.Entry
	err := e.as(o, r.Dir, func(dir int) (err error) {
		ent, err = e.entryAt(dir, r.Name)
		return err
	})
	if err != nil {
		return &pb.Entry{Errno: errno(err)}
	}
	return ent
}

func attrReply(fd int) *pb.AttrReply {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &pb.AttrReply{Errno: errno(err)}
	}
	return &pb.AttrReply{Attr: attrOf(&st)}
}

// GetAttr is a file's attributes.
func (e *Export) GetAttr(o Op, r *pb.HandleRequest) *pb.AttrReply {
	var rep *pb.AttrReply
	if err := e.as(o, r.Handle, func(fd int) error { rep = attrReply(fd); return nil }); err != nil {
		return &pb.AttrReply{Errno: errno(err)}
	}
	return rep
}

// SetAttr changes what the request sets, in the order a local chown,
// chmod, truncate and touch would, each checked as the caller: the size
// first (through the client's open file when it names one), then owner,
// mode and times.
func (e *Export) SetAttr(o Op, r *pb.SetAttrRequest) *pb.AttrReply {
	var rep *pb.AttrReply
	err := e.as(o, r.Handle, func(fd int) error {
		link, err := isLink(fd)
		if err != nil {
			return err
		}
		if r.Size != nil {
			if link {
				return unix.EINVAL
			}
			if r.Fh != 0 {
				err = e.withFile(o.Client, r.Fh, func(f int) error { return unix.Ftruncate(f, int64(*r.Size)) })
			} else {
				err = unix.Truncate(procPath(fd), int64(*r.Size))
			}
			if err != nil {
				return err
			}
		}
		if r.Uid != nil || r.Gid != nil {
			uid, gid := -1, -1
			if r.Uid != nil {
				uid = int(*r.Uid)
			}
			if r.Gid != nil {
				gid = int(*r.Gid)
			}
			if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
				return err
			}
		}
		if r.Mode != nil {
			if link {
				return unix.EOPNOTSUPP
			}
			if err := unix.Chmod(procPath(fd), *r.Mode&07777); err != nil {
				return err
			}
		}
		if r.AtimeNs != nil || r.MtimeNs != nil {
			ts := []unix.Timespec{timespec(r.AtimeNs), timespec(r.MtimeNs)}
			if link {
				err = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
			} else {
				err = unix.UtimesNanoAt(unix.AT_FDCWD, procPath(fd), ts, 0)
			}
			if err != nil {
				return err
			}
		}
		rep = attrReply(fd)
		return nil
	})
	if err != nil {
		return &pb.AttrReply{Errno: errno(err)}
	}
	return rep
}

// timespec is a time of SetAttr: unset leaves it, -1 is now.
func timespec(ns *int64) unix.Timespec {
	switch {
	case ns == nil:
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	case *ns == -1:
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	default:
		return unix.NsecToTimespec(*ns)
	}
}

// Readlink is a symbolic link's text.
func (e *Export) Readlink(o Op, r *pb.HandleRequest) *pb.ReadlinkReply {
	buf := make([]byte, unix.PathMax)
	var n int
	err := e.as(o, r.Handle, func(fd int) (err error) {
		n, err = unix.Readlinkat(fd, "", buf)
		return err
	})
	if err != nil {
		return &pb.ReadlinkReply{Errno: errno(err)}
	}
	return &pb.ReadlinkReply{Target: buf[:n]}
}

// A page of a directory listing holds at most pageEntries entries and
// about pageBytes of names.
const (
	pageEntries = 4096
	pageBytes   = 256 << 10
)

// ReadDir lists a page of a directory, read as the caller (who needs
// read permission on it), without "." and "..".
func (e *Export) ReadDir(o Op, r *pb.ReadDirRequest) *pb.ReadDirReply {
	rep := &pb.ReadDirReply{}
	err := e.as(o, r.Handle, func(fd int) error {
		if link, err := isLink(fd); err != nil || link {
			return orErr(err, unix.ENOTDIR)
		}
		d, err := unix.Open(procPath(fd), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(d)
		if r.Cookie != 0 {
			if _, err := unix.Seek(d, int64(r.Cookie), 0); err != nil {
				return err
			}
		}
		buf := make([]byte, 32<<10)
		names := 0
		for {
			n, err := unix.Getdents(d, buf)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			for _, de := range parseDirents(buf[:n]) {
				if len(rep.Entries) >= pageEntries || names >= pageBytes {
					rep.More = true
					return nil
				}
				rep.Cookie = de.off
				if de.name == "." || de.name == ".." {
					continue
				}
				rep.Entries = append(rep.Entries, &pb.DirEntry{Name: de.name, Ino: de.ino, Mode: de.mode})
				names += len(de.name)
			}
		}
	})
	if err != nil {
		return &pb.ReadDirReply{Errno: errno(err)}
	}
	return rep
}

func orErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

type dirent struct {
	ino, off uint64
	mode     uint32
	name     string
}

// parseDirents reads a getdents64 buffer the kernel filled (struct
// linux_dirent64: ino, off, reclen, type, name); off is the cookie of the
// entry after each.
func parseDirents(b []byte) []dirent {
	const nameAt = int(unsafe.Offsetof(unix.Dirent{}.Name))
	var out []dirent
	for len(b) >= nameAt {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameAt || reclen > len(b) {
			break
		}
		name := b[nameAt:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		out = append(out, dirent{ino: binary.NativeEndian.Uint64(b[0:8]), off: binary.NativeEndian.Uint64(b[8:16]), mode: uint32(b[18]) << 12, name: string(name)})
		b = b[reclen:]
	}
	return out
}

// openFlags are the open(2) flags a client may ask the server for: the
// access mode and what changes the file's writes or opening; never
// O_CREAT (Create does that in a directory), O_NOCTTY or O_PATH.
const openFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_TRUNC | unix.O_SYNC | unix.O_DSYNC | unix.O_DIRECT | unix.O_NOATIME | unix.O_DIRECTORY

// openable refuses to open on the server anything but a regular file or
// a directory: a client's kernel opens device nodes and FIFOs on its own
// node (the server would open its own devices for it, and an open of a
// FIFO blocks), and a symbolic link is never followed here.
func openable(fd int) error {
	t, err := fileType(fd)
	if err != nil {
		return err
	}
	switch t {
	case unix.S_IFREG, unix.S_IFDIR:
		return nil
	case unix.S_IFLNK:
		return unix.ELOOP
	default:
		return unix.ENXIO
	}
}

// Open opens a file for the client, as the caller.
func (e *Export) Open(o Op, r *pb.OpenRequest) *pb.OpenReply {
	var f int
	err := e.as(o, r.Handle, func(fd int) (err error) {
		if err := openable(fd); err != nil {
			return err
		}
		f, err = unix.Open(procPath(fd), int(r.Flags)&openFlags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		return err
	})
	if err != nil {
		return &pb.OpenReply{Errno: errno(err)}
	}
	fh, err := e.addFile(o, f)
	if err != nil {
		return &pb.OpenReply{Errno: errno(err)}
	}
	return &pb.OpenReply{Fh: fh}
}

// Create makes and opens a regular file in a directory, as the caller
// (so it is theirs), refusing to follow a symbolic link in its place.
func (e *Export) Create(o Op, r *pb.CreateRequest) *pb.OpenReply {
	if err := validName(r.Name); err != nil {
		return &pb.OpenReply{Errno: errno(err)}
	}
	var f int
	var ent *pb.Entry
	err := e.as(o, r.Dir, func(dir int) (err error) {
		// O_NONBLOCK: a FIFO made in the name's place meanwhile must
		// not block the open; openable then refuses it.
		flags := int(r.Flags)&(openFlags|unix.O_EXCL)&^unix.O_DIRECTORY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK
		f, err = unix.Openat(dir, r.Name, flags, r.Mode&07777)
		if err != nil {
			return err
		}
		if err = openable(f); err == nil && r.Flags&unix.O_NONBLOCK == 0 {
			_, err = unix.FcntlInt(uintptr(f), unix.F_SETFL, flags&^unix.O_NONBLOCK)
		}
		if err != nil {
			unix.Close(f)
			return err
		}
		ent, err = e.entry(f)
		if err != nil {
			unix.Close(f)
		}
		return err
	})
	if err != nil {
		return &pb.OpenReply{Errno: errno(err)}
	}
	fh, err := e.addFile(o, f)
	if err != nil {
		return &pb.OpenReply{Errno: errno(err)}
	}
	return &pb.OpenReply{Fh: fh, Entry: ent}
}

// Read reads from an open file.
func (e *Export) Read(o Op, r *pb.ReadRequest) *pb.ReadReply {
	size := int(r.Size)
	if size > e.limits.MaxIO {
		size = e.limits.MaxIO
	}
	buf := make([]byte, size)
	var n int
	err := e.withFile(o.Client, r.Fh, func(fd int) (err error) {
		for n < size {
			m, err := unix.Pread(fd, buf[n:], r.Offset+int64(n))
			if err != nil {
				return err
			}
			if m == 0 {
				break
			}
			n += m
		}
		return nil
	})
	if err != nil && n == 0 {
		return &pb.ReadReply{Errno: errno(err)}
	}
	return &pb.ReadReply{Data: buf[:n]}
}

// Write writes to an open file, as the caller (a write by another user
// than root clears the file's set-user-ID and set-group-ID bits, as the
// kernel decides by the writing thread's identity); a file opened
// O_APPEND is written at its end whatever the offset (pwrite(2) on
// Linux), so appends from several nodes never overwrite each other.
func (e *Export) Write(o Op, r *pb.WriteRequest) *pb.WriteReply {
	if len(r.Data) > e.limits.MaxIO {
		return &pb.WriteReply{Errno: int32(unix.EFBIG)}
	}
	var n int
	err := e.withFileAs(o, r.Fh, func(fd int) error {
		for n < len(r.Data) {
			m, err := unix.Pwrite(fd, r.Data[n:], r.Offset+int64(n))
			if err != nil {
				return err
			}
			n += m
		}
		return nil
	})
	if err != nil && n == 0 {
		return &pb.WriteReply{Errno: errno(err)}
	}
	return &pb.WriteReply{Written: uint32(n)}
}

// Fsync flushes an open file to the disk.
func (e *Export) Fsync(o Op, r *pb.FileRequest) *pb.Errno {
	return &pb.Errno{Errno: errno(e.withFile(o.Client, r.Fh, func(fd int) error {
		if r.Datasync {
			return unix.Fdatasync(fd)
		}
		return unix.Fsync(fd)
	}))}
}

// Release closes an open file.
func (e *Export) Release(o Op, r *pb.FileRequest) *pb.Errno {
	return &pb.Errno{Errno: errno(e.release(o.Client, r.Fh))}
}

// Allocate is fallocate(2) on an open file, as the caller.
func (e *Export) Allocate(o Op, r *pb.AllocateRequest) *pb.Errno {
	return &pb.Errno{Errno: errno(e.withFileAs(o, r.Fh, func(fd int) error {
		return unix.Fallocate(fd, r.Mode, r.Offset, r.Length)
	}))}
}

// Lseek answers SEEK_DATA and SEEK_HOLE (and the others) on an open
// file; the file's own offset is not used by reads and writes.
func (e *Export) Lseek(o Op, r *pb.LseekRequest) *pb.LseekReply {
	var off int64
	err := e.withFile(o.Client, r.Fh, func(fd int) (err error) {
		off, err = unix.Seek(fd, r.Offset, int(r.Whence))
		return err
	})
	if err != nil {
		return &pb.LseekReply{Errno: errno(err)}
	}
	return &pb.LseekReply{Offset: off}
}

// made runs mk as the caller in the directory dir and returns the
// entry of name it made.
func (e *Export) made(o Op, dir []byte, name string, mk func(dirfd int) error) *pb.Entry {
	if err := validName(name); err != nil {
		return &pb.Entry{Errno: errno(err)}
	}
	var ent *pb.Entry
	err := e.as(o, dir, func(dirfd int) (err error) {
		if err := mk(dirfd); err != nil {
			return err
		}
		ent, err = e.entryAt(dirfd, name)
		return err
	})
	if err != nil {
		return &pb.Entry{Errno: errno(err)}
	}
	return ent
}

// Mkdir makes a directory.
func (e *Export) Mkdir(o Op, r *pb.MakeRequest) *pb.Entry {
	return e.made(o, r.Dir, r.Name, func(dir int) error { return unix.Mkdirat(dir, r.Name, r.Mode&07777) })
}

// Mknod makes a device, FIFO or socket node (or a regular file).
func (e *Export) Mknod(o Op, r *pb.MakeRequest) *pb.Entry {
	return e.made(o, r.Dir, r.Name, func(dir int) error {
		return unix.Mknodat(dir, r.Name, r.Mode&unix.S_IFMT|r.Mode&07777, int(r.Rdev))
	})
}

// Symlink makes a symbolic link.
func (e *Export) Symlink(o Op, r *pb.SymlinkRequest) *pb.Entry {
	return e.made(o, r.Dir, r.Name, func(dir int) error { return unix.Symlinkat(string(r.Target), dir, r.Name) })
}

// Link makes a hard link to an existing file.
func (e *Export) Link(o Op, r *pb.LinkRequest) *pb.Entry {
	src, err := e.byHandle(r.Handle)
	if err != nil {
		return &pb.Entry{Errno: errno(err)}
	}
	defer unix.Close(src)
	return e.made(o, r.Dir, r.Name, func(dir int) error {
		// linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which the
		// caller's identity has dropped; the /proc link is the way
		// without it, and it links the file src is, a symbolic link
		// included.
		return unix.Linkat(unix.AT_FDCWD, procPath(src), dir, r.Name, unix.AT_SYMLINK_FOLLOW)
	})
}

// Unlink removes a name that is not a directory.
func (e *Export) Unlink(o Op, r *pb.NameRequest) *pb.Errno {
	return e.inDir(o, r.Dir, r.Name, func(dir int) error { return unix.Unlinkat(dir, r.Name, 0) })
}

// Rmdir removes an empty directory.
func (e *Export) Rmdir(o Op, r *pb.NameRequest) *pb.Errno {
	return e.inDir(o, r.Dir, r.Name, func(dir int) error { return unix.Unlinkat(dir, r.Name, unix.AT_REMOVEDIR) })
}

func (e *Export) inDir(o Op, dir []byte, name string, op func(dirfd int) error) *pb.Errno {
	if err := validName(name); err != nil {
		return &pb.Errno{Errno: errno(err)}
	}
	return &pb.Errno{Errno: errno(e.as(o, dir, op))}
}

// Rename is renameat2(2) between two directories of the export.
func (e *Export) Rename(o Op, r *pb.RenameRequest) *pb.Errno {
	if err := orErr(validName(r.Name), validName(r.NewName)); err != nil {
		return &pb.Errno{Errno: errno(err)}
	}
	to, err := e.byHandle(r.NewDir)
	if err != nil {
		return &pb.Errno{Errno: errno(err)}
	}
	defer unix.Close(to)
	return &pb.Errno{Errno: errno(e.as(o, r.Dir, func(from int) error {
		return unix.Renameat2(from, r.Name, to, r.NewName, uint(r.Flags))
	}))}
}

// Statfs is the export's file system's statistics.
func (e *Export) Statfs(o Op, r *pb.HandleRequest) *pb.StatfsReply {
	var st unix.Statfs_t
	if err := unix.Fstatfs(e.root, &st); err != nil {
		return &pb.StatfsReply{Errno: errno(err)}
	}
	return &pb.StatfsReply{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail, Files: st.Files, Ffree: st.Ffree,
		Bsize: uint32(st.Bsize), Namelen: uint32(st.Namelen), Frsize: uint32(st.Frsize),
	}
}

// maxXattr bounds an extended attribute's value and a list of names
// (XATTR_SIZE_MAX).
const maxXattr = 64 << 10

// xattr runs op on the path of a file that is not a symbolic link (the
// kernel keeps no user attributes on links, and the /proc path would
// follow one).
func (e *Export) xattr(o Op, h []byte, op func(path string) error) error {
	return e.as(o, h, func(fd int) error {
		if link, err := isLink(fd); err != nil || link {
			return orErr(err, unix.EPERM)
		}
		return op(procPath(fd))
	})
}

// privileged says whether an extended attribute's name is in a
// namespace only root may use (trusted.*) or change (security.*): the
// server keeps CAP_SYS_ADMIN under a caller's fsuid (it drops only the
// file-system capabilities), so it refuses those for other callers
// itself, as the kernel would for the caller's own process.
func privileged(name string, change bool) bool {
	return strings.HasPrefix(name, "trusted.") || (change && strings.HasPrefix(name, "security."))
}

// GetXattr reads an extended attribute; with size 0, only its size.
func (e *Export) GetXattr(o Op, r *pb.XattrRequest) *pb.XattrReply {
	if o.Cred.UID != 0 && privileged(r.Name, false) {
		return &pb.XattrReply{Errno: int32(unix.ENODATA)}
	}
	return e.xattrRead(o, r, func(path string, buf []byte) (int, error) { return unix.Getxattr(path, r.Name, buf) })
}

// ListXattr lists the extended attributes' names (without trusted.* for
// a caller other than root); with size 0, only the list's size (an
// upper bound for such a caller).
func (e *Export) ListXattr(o Op, r *pb.XattrRequest) *pb.XattrReply {
	rep := e.xattrRead(o, r, func(path string, buf []byte) (int, error) { return unix.Listxattr(path, buf) })
	if rep.Errno == int32(unix.EPERM) {
		return &pb.XattrReply{} // a symbolic link: no names
	}
	if o.Cred.UID != 0 && rep.Errno == 0 && len(rep.Value) > 0 {
		var kept []byte
		for name := range strings.SplitSeq(strings.TrimSuffix(string(rep.Value), "\x00"), "\x00") {
			if !privileged(name, false) {
				kept = append(append(kept, name...), 0)
			}
		}
		rep.Value, rep.Size = kept, uint32(len(kept))
	}
	return rep
}

func (e *Export) xattrRead(o Op, r *pb.XattrRequest, read func(path string, buf []byte) (int, error)) *pb.XattrReply {
	size := min(int(r.Size), maxXattr)
	var buf []byte
	if size > 0 {
		buf = make([]byte, size)
	}
	var n int
	err := e.xattr(o, r.Handle, func(path string) (err error) {
		n, err = read(path, buf)
		return err
	})
	if err != nil {
		if err == unix.EPERM && r.Name != "" {
			err = unix.ENODATA // nothing to read on a link
		}
		return &pb.XattrReply{Errno: errno(err)}
	}
	if size == 0 {
		return &pb.XattrReply{Size: uint32(n)}
	}
	return &pb.XattrReply{Value: buf[:n], Size: uint32(n)}
}

// SetXattr sets an extended attribute.
func (e *Export) SetXattr(o Op, r *pb.XattrRequest) *pb.Errno {
	if o.Cred.UID != 0 && privileged(r.Name, true) {
		return &pb.Errno{Errno: int32(unix.EPERM)}
	}
	if len(r.Value) > maxXattr {
		return &pb.Errno{Errno: int32(unix.E2BIG)}
	}
	return &pb.Errno{Errno: errno(e.xattr(o, r.Handle, func(path string) error {
		return unix.Setxattr(path, r.Name, r.Value, int(r.Flags))
	}))}
}

// RemoveXattr removes an extended attribute.
func (e *Export) RemoveXattr(o Op, r *pb.XattrRequest) *pb.Errno {
	if o.Cred.UID != 0 && privileged(r.Name, true) {
		return &pb.Errno{Errno: int32(unix.EPERM)}
	}
	return &pb.Errno{Errno: errno(e.xattr(o, r.Handle, func(path string) error { return unix.Removexattr(path, r.Name) }))}
}
