package localapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
)

// FrameConn is one end of a connection that carries execwire frames
// (vprocd's exec socket): Read and Write may each be used by one
// goroutine at a time, both at once.
type FrameConn struct {
	c   *net.UnixConn
	wmu sync.Mutex
	oob []byte
	// first is true until the first frame was read: only it may carry
	// descriptors.
	first bool
}

// NewFrameConn wraps a Unix stream connection.
func NewFrameConn(c *net.UnixConn) *FrameConn {
	return &FrameConn{c: c, oob: make([]byte, unix.CmsgSpace(4*oobFiles)), first: true}
}

// Conn returns the connection.
func (f *FrameConn) Conn() *net.UnixConn { return f.c }

// Close closes the connection.
func (f *FrameConn) Close() error { return f.c.Close() }

// Write sends one frame of kind with message msg; files, when given,
// ride on it (SCM_RIGHTS). The frame is written whole or not at all as
// far as the caller's other writes go.
func (f *FrameConn) Write(kind byte, msg []byte, files []*os.File) error {
	if len(msg) > execwire.MaxMessage {
		return fmt.Errorf("localapi: a message of %d bytes: over %d", len(msg), execwire.MaxMessage)
	}
	b := execwire.AppendHeader(make([]byte, 0, execwire.HeaderSize+len(msg)), kind, len(msg))
	b = append(b, msg...)
	var oob []byte
	if len(files) > 0 {
		fds, err := descriptors(files)
		if err != nil {
			return err
		}
		oob = unix.UnixRights(fds...)
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for len(b) > 0 {
		n, _, err := f.c.WriteMsgUnix(b, oob, nil)
		if err != nil {
			return err
		}
		b, oob = b[n:], nil
	}
	return nil
}

// descriptors returns the descriptors of files to pass. Not f.Fd(), which
// would put a shared (non-blocking) file description into blocking mode.
func descriptors(files []*os.File) ([]int, error) {
	fds := make([]int, 0, len(files))
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("localapi: pass %s: %w", f.Name(), err)
		}
		if err := rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) }); err != nil {
			return nil, fmt.Errorf("localapi: pass %s: %w", f.Name(), err)
		}
	}
	return fds, nil
}

// ErrFilesRefused is a frame that carried descriptors where none may
// come, or too many; the connection is then unusable.
var ErrFilesRefused = errors.New("localapi: descriptors refused on this frame")

// Read returns the next frame: its kind, its message and the files that
// came with it (only the first frame may carry files, at most
// execwire.MaxFiles). io.EOF is a connection closed between frames.
func (f *FrameConn) Read() (kind byte, msg []byte, files []*os.File, err error) {
	var h [execwire.HeaderSize]byte
	files, err = f.readFull(h[:], true)
	if err != nil {
		return 0, nil, nil, err
	}
	kind, n, err := execwire.ParseHeader(h)
	if err != nil {
		closeFiles(files)
		return 0, nil, nil, err
	}
	// Grown as the bytes come, not at once: a header alone, claiming
	// the most, costs nothing.
	msg = make([]byte, 0, min(n, frameChunk))
	for len(msg) < n {
		k := min(n-len(msg), max(len(msg), frameChunk))
		msg = append(msg, make([]byte, k)...)
		if _, err := f.readFull(msg[len(msg)-k:], false); err != nil {
			closeFiles(files)
			return 0, nil, nil, unexpected(err)
		}
	}
	return kind, msg, files, nil
}

// frameChunk is the first read of a frame's message; the buffer then
// doubles as it fills.
const frameChunk = 64 << 10

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readFull fills b; files are taken from the first read of a frame that
// starts the connection.
func (f *FrameConn) readFull(b []byte, head bool) ([]*os.File, error) {
	var files []*os.File
	for got := 0; got < len(b); {
		n, oobn, flags, _, err := f.c.ReadMsgUnix(b[got:], f.oob)
		if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
			fds, perr := ParseRights(f.oob[:oobn])
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "passed"))
			}
			if perr != nil || flags&unix.MSG_CTRUNC != 0 || !(head && got == 0 && f.first) || len(files) > execwire.MaxFiles {
				closeFiles(files)
				return nil, ErrFilesRefused
			}
		}
		if n > 0 {
			got += n
			continue
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = io.EOF // recvmsg's 0: the peer closed the connection
		}
		if got > 0 {
			err = unexpected(err)
		}
		closeFiles(files)
		return nil, err
	}
	if head {
		f.first = false
	}
	return files, nil
}

// UnixConnOf makes a Unix stream connection of descriptor fd, which it
// takes: fd is closed, the connection holds a duplicate of it.
func UnixConnOf(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "unix connection")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("localapi: descriptor %d is a %T, not a Unix connection", fd, c)
	}
	return uc, nil
}

// HungUp reports whether the other end closed the connection (or shut
// its writing down), whatever it sent before is still unread: poll(2)'s
// POLLRDHUP, without reading.
func (f *FrameConn) HungUp() bool {
	rc, err := f.c.SyscallConn()
	if err != nil {
		return true
	}
	hup := false
	if err := rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			hup = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
		}
	}); err != nil {
		return true
	}
	return hup
}

// PeerCred returns the identity of the process at the other end of a Unix
// connection (SO_PEERCRED and SO_PEERGROUPS, as the gRPC API's handshake
// reads it).
func PeerCred(conn net.Conn) (Cred, error) { return peerCred(conn) }

// WithCaller returns ctx as a handler of the local API sees it for a call
// of caller that came with files: CallerFrom and FilesFrom give them. A
// server that serves a call over its own connection (the exec socket)
// calls the same handler with it.
func WithCaller(ctx context.Context, caller Cred, files []*os.File) context.Context {
	q := &Files{}
	if len(files) > 0 {
		q.sets = [][]*os.File{files}
	}
	ai := authInfo(caller)
	ai.Files = q
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: ai})
}

// CloseFiles closes every set of files not taken.
func (q *Files) CloseFiles() {
	if q != nil {
		q.close()
	}
}

// SendMsgAs implements a typed stream's SendMsg with its Send: m must be
// a T.
func SendMsgAs[T proto.Message](m any, send func(T) error) error {
	t, ok := m.(T)
	if !ok {
		return status.Errorf(codes.Internal, "localapi: send %T on a stream of %T", m, t)
	}
	return send(t)
}

// RecvMsgAs implements a typed stream's RecvMsg with its Recv: m must be
// a T, into which the message received is merged.
func RecvMsgAs[T proto.Message](m any, recv func() (T, error)) error {
	t, ok := m.(T)
	if !ok {
		return status.Errorf(codes.Internal, "localapi: receive %T on a stream of %T", m, t)
	}
	r, err := recv()
	if err != nil {
		return err
	}
	proto.Merge(t, r)
	return nil
}
