package localapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Passing files. A client hands open files (its stdio, say) to the daemon
// over its local API connection with SCM_RIGHTS, as OpenSSH's ControlMaster
// clients do, so the daemon reads and writes them itself instead of the
// bytes crossing the client. The files ride on the next bytes the client's
// gRPC transport writes after [Passer.Pass]; the server's connection reads
// with recvmsg and queues every set of files it receives on the connection
// ([Files]), in order, before the bytes that carried them reach gRPC: a
// handler that reads a request sent after Pass finds its files queued.
// Files only ever come from the process at the other end of the connection
// (whose identity [CallerFrom] gives), and are only taken by handlers of
// that connection.

// MaxFiles is the most files one set may hold; a connection that sends
// more in one set, or more than maxQueued sets not taken, is closed.
const MaxFiles = 3

// maxQueued bounds the sets waiting on one connection: a client passes
// one set and waits for the handler to take it (client/vproc holds its
// pass lock until vprocd answers), so a second waiting set is a client
// out of step, and each set holds descriptors in the daemon.
const maxQueued = 1

// Files is the queue of file sets a connection received.
type Files struct {
	mu     sync.Mutex
	sets   [][]*os.File
	closed bool
}

// Take removes and returns the oldest set received, or nil (nil too on a
// nil queue: a server without [FileCredentials]).
func (q *Files) Take() []*os.File {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.sets) == 0 {
		return nil
	}
	s := q.sets[0]
	q.sets = q.sets[1:]
	return s
}

// add queues a set; false (the set closed) when the connection is closed
// or has too many waiting.
func (q *Files) add(s []*os.File) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.sets) >= maxQueued {
		closeFiles(s)
		return false
	}
	q.sets = append(q.sets, s)
	return true
}

// close closes every set not taken.
func (q *Files) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, s := range q.sets {
		closeFiles(s)
	}
	q.sets = nil
}

func closeFiles(s []*os.File) {
	for _, f := range s {
		f.Close()
	}
}

// FilesFrom returns the file queue of the connection of the call handled
// under ctx; nil when the server does not use [FileCredentials].
func FilesFrom(ctx context.Context) *Files {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return nil
	}
	return ai.Files
}

// FileCredentials are [Credentials] for a server that takes files
// ([FilesFrom]): each connection reads with recvmsg and queues the files
// that come with its bytes.
func FileCredentials() credentials.TransportCredentials { return fileCreds{} }

type fileCreds struct{ peerCreds }

func (fileCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := handshake(conn)
	if err != nil {
		return nil, nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, nil, errors.New("localapi: a connection that takes files must be a Unix socket")
	}
	info := ai.(AuthInfo)
	info.Files = &Files{}
	return &filesConn{UnixConn: uc, q: info.Files, oob: make([]byte, unix.CmsgSpace(4*oobFiles))}, info, nil
}

func (fileCreds) Clone() credentials.TransportCredentials { return fileCreds{} }

// oobFiles is the room for descriptors in one read's ancillary buffer:
// more than MaxFiles, so that a set too large is seen whole (and closed)
// rather than cut (MSG_CTRUNC, which closes the connection too).
const oobFiles = 16

// filesConn is a server's end of a connection that takes files.
type filesConn struct {
	*net.UnixConn
	q   *Files
	oob []byte
}

func (c *filesConn) Read(b []byte) (int, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(b, c.oob)
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		fds, perr := ParseRights(c.oob[:oobn])
		set := make([]*os.File, 0, len(fds))
		for _, fd := range fds {
			set = append(set, os.NewFile(uintptr(fd), "passed"))
		}
		switch {
		case perr != nil, flags&unix.MSG_CTRUNC != 0, len(set) > MaxFiles:
			closeFiles(set)
			c.UnixConn.Close()
			return 0, fmt.Errorf("localapi: files passed on a connection refused (%d descriptors, %v)", len(fds), perr)
		case len(set) > 0 && !c.q.add(set):
			c.UnixConn.Close()
			return 0, errors.New("localapi: too many file sets passed and not taken: connection closed")
		}
	}
	if n < 0 {
		n = 0
	}
	if n == 0 && err == nil && len(b) > 0 {
		// recvmsg's 0 on a stream socket: the peer closed it (a
		// Read says io.EOF, ReadMsgUnix does not).
		err = io.EOF
	}
	return n, err
}

func (c *filesConn) Close() error {
	c.q.close()
	return c.UnixConn.Close()
}

// ParseRights returns the descriptors of the SCM_RIGHTS messages in oob,
// the ancillary data of a recvmsg (the descriptors are open in this
// process: the caller owns them, even with an error).
func ParseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("localapi: ancillary data: %w", err)
	}
	var fds []int
	var ferr error
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			ferr = fmt.Errorf("localapi: ancillary message %d/%d, not SCM_RIGHTS", msgs[i].Header.Level, msgs[i].Header.Type)
			continue
		}
		// Not unix.ParseUnixRights, which panics on data that is not
		// whole descriptors (the fuzzer found it; the kernel never
		// sends that).
		d := msgs[i].Data
		if len(d)%4 != 0 {
			ferr = fmt.Errorf("localapi: SCM_RIGHTS of %d bytes, not whole descriptors", len(d))
			d = d[:len(d)/4*4]
		}
		for ; len(d) >= 4; d = d[4:] {
			fds = append(fds, int(int32(binary.NativeEndian.Uint32(d))))
		}
	}
	return fds, ferr
}

// Passer hands files to the daemon at the other end of a client's
// connection (see [DialPassing]).
type Passer struct {
	mu   sync.Mutex
	conn *passConn
}

// Pass attaches files to the next bytes the connection writes. Files are
// duplicated by the kernel when sent: the caller keeps (and may close)
// its own once the request that follows was sent.
func (p *Passer) Pass(files []*os.File) error {
	if len(files) == 0 || len(files) > MaxFiles {
		return fmt.Errorf("localapi: pass %d files: want 1 to %d", len(files), MaxFiles)
	}
	fds, err := descriptors(files)
	if err != nil {
		return err
	}
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c == nil {
		return errors.New("localapi: pass files: not connected")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rights != nil {
		return errors.New("localapi: pass files: files already waiting to be sent")
	}
	c.rights, c.files = unix.UnixRights(fds...), files
	return nil
}

// passConn is a client's end of a connection that passes files.
type passConn struct {
	*net.UnixConn
	mu     sync.Mutex
	rights []byte
	files  []*os.File // kept open until sent
}

func (c *passConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rights == nil || len(b) == 0 {
		return c.UnixConn.Write(b)
	}
	n, _, err := c.WriteMsgUnix(b, c.rights, nil)
	if n > 0 || err != nil {
		c.rights, c.files = nil, nil
	}
	if err != nil || n == len(b) {
		return n, err
	}
	k, err := c.UnixConn.Write(b[n:])
	return n + k, err
}
