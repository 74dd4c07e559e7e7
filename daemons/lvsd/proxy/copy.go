package proxy

import (
	"io"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// bufSize is the buffer of one read: HAProxy's default tune.bufsize. A
// read that fills it marks a bulk stream (see copyStream).
const bufSize = 16 << 10

// bufs are the read buffers. A buffer is taken only once the socket has
// data and given back as soon as it is written on, so an idle connection
// holds none: the memory is that of the messages in flight.
var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copyStream copies src to dst until src's end (nil) or an error.
//
// Small messages (requests and answers of a few hundred bytes, the common
// case of a keep-alive protocol) go by read and write through a pooled
// buffer: a message costs a read that finds nothing yet, a read and a
// write, where io.Copy's splice makes the same three calls through a pipe,
// each of them dearer, and keeps a pipe (two descriptors) a direction for
// the connection's life. Once a read
// fills the buffer the stream is bulk, and the rest goes by io.Copy, which
// splices in the kernel without copying it through user space.
func copyStream(dst, src *net.TCPConn) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	r := reader{}
	read := r.read // one closure for the connection, not one a read
	for {
		if err := rc.Read(read); err != nil {
			return err
		}
		if r.err != nil {
			return r.err
		}
		if r.n == 0 {
			return nil // the client or backend closed its side
		}
		bulk := r.n == len(*r.buf)
		_, err := dst.Write((*r.buf)[:r.n])
		bufs.Put(r.buf)
		r.buf = nil
		if err != nil {
			return err
		}
		if bulk {
			_, err := io.Copy(dst, src)
			return err
		}
	}
}

// reader is the state of one read of copyStream, for RawConn.Read.
type reader struct {
	buf *[]byte
	n   int
	err error
}

// read reads what the socket has into a pooled buffer; it returns false,
// to wait until the socket is readable, when it has nothing yet. At the
// socket's end it leaves n 0 and no buffer. (unix.Read returns a bare
// Errno, so comparing it with == is exact.)
func (r *reader) read(fd uintptr) bool {
	r.buf = bufs.Get().(*[]byte)
	for {
		r.n, r.err = unix.Read(int(fd), *r.buf)
		if r.err != unix.EINTR {
			break
		}
	}
	if r.err == unix.EAGAIN {
		bufs.Put(r.buf)
		r.buf = nil
		return false
	}
	if r.err != nil || r.n <= 0 {
		bufs.Put(r.buf)
		r.buf = nil
		r.n = 0
		if r.err != nil {
			r.err = prefix(r.err)
		}
	}
	return true
}
