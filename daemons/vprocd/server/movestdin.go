package server

import (
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/daemons/vprocd/runner"
)

// This file keeps a moving program's stdin whole. At the source, the
// chunks that come after its checkpoint are held back (written to it if
// the move fails), and when the move commits the bytes left unread in its
// stdin pipe are counted back: Moved says how many bytes of the stream the
// old copy took, and the caller's vprocd sends the new copy the rest
// again from what it keeps of the stream (stdinLog).

// migStdin is the source's side.
type migStdin struct {
	mu      sync.Mutex
	holding bool
	held    [][]byte
	heldEOF bool
	// heldBytes counts held; past maxHeld hold waits (cond) for the
	// move's end, so the caller's stream is pushed back instead of
	// vprocd keeping whatever it sends. gone: the program ended.
	heldBytes int
	cond      *sync.Cond
	gone      bool
	// taken counts the bytes written to the program's stdin.
	taken atomic.Int64
	// pipe is the read end of its stdin pipe, opened at the end of a
	// committed move to count what it left unread (with hasPipe).
	pipe    int
	hasPipe bool
}

// maxHeld bounds the stdin held back during a move: no more than the
// caller's vprocd keeps to send a new copy again (maxStdinLog).
const maxHeld = maxStdinLog

// hold keeps b back while the program is checkpointed; past maxHeld it
// waits until the move ends (released, or the program gone).
func (m *migStdin) hold(b []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.holding && !m.gone && m.heldBytes+len(b) > maxHeld && len(m.held) > 0 {
		m.waitLocked()
	}
	if m.gone {
		return true // dropped: a program ended takes no more
	}
	if m.holding {
		m.held = append(m.held, b)
		m.heldBytes += len(b)
	}
	return m.holding
}

func (m *migStdin) waitLocked() {
	if m.cond == nil {
		m.cond = sync.NewCond(&m.mu)
	}
	m.cond.Wait()
}

func (m *migStdin) wakeLocked() {
	if m.cond != nil {
		m.cond.Broadcast()
	}
}

// ended wakes a hold waiting for the move's end: the program is gone.
func (m *migStdin) ended() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gone = true
	m.wakeLocked()
}

// holdEOF keeps the end of stdin back while checkpointed.
func (m *migStdin) holdEOF() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holding {
		m.heldEOF = true
	}
	return m.holding
}

// startHolding is called once the program is checkpointed.
func (m *migStdin) startHolding() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holding = true
}

// release writes what was held back to p (the move failed) and lets the
// stream through again.
func (m *migStdin) release(p *runner.Proc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.held {
		n, err := p.Stdin.Write(b)
		m.taken.Add(int64(n))
		if err != nil {
			break
		}
	}
	if m.heldEOF {
		_ = p.CloseStdin()
	}
	m.held, m.heldEOF, m.holding, m.heldBytes = nil, false, false, 0
	m.wakeLocked()
}

// openPipe opens, before the program is ended, the read end of its stdin
// pipe (through /proc, when its descriptor 0 still is the pipe vprocd
// writes), so that what it left unread can be counted after its end.
func (m *migStdin) openPipe(p *runner.Proc) {
	w, ok := p.Stdin.(*os.File)
	if !ok {
		return
	}
	path := "/proc/" + strconv.Itoa(p.Pid) + "/fd/0"
	ws, err1 := w.Stat()
	rs, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(ws, rs) {
		return
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	m.pipe, m.hasPipe = fd, true
}

// takenAfterEnd is how many bytes the ended program took: those written
// to it less those it left in its pipe.
func (m *migStdin) takenAfterEnd() int64 {
	left := int64(0)
	if m.hasPipe {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(m.pipe, buf)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if n <= 0 {
				break
			}
			left += int64(n)
		}
		unix.Close(m.pipe)
		m.hasPipe = false
	}
	return m.taken.Load() - left
}

// stdinLog is what the caller's vprocd keeps of a migratable program's
// stdin stream: its last maxStdinLog bytes, by their offset in the
// stream of the program's node of the moment.
type stdinLog struct {
	chunks [][]byte
	first  int64 // the offset of chunks[0]
	sent   int64 // the bytes sent on the stream
	size   int64 // the bytes kept
}

// maxStdinLog bounds what is kept: more than the peer link's flow
// control lets be in flight, and the program's stdin pipe holds.
const maxStdinLog = 4 * runner.PipeSize

func (l *stdinLog) add(b []byte) {
	if len(b) == 0 {
		return
	}
	l.chunks = append(l.chunks, b)
	l.sent += int64(len(b))
	l.size += int64(len(b))
	for len(l.chunks) > 1 && l.size-int64(len(l.chunks[0])) >= maxStdinLog {
		l.size -= int64(len(l.chunks[0]))
		l.first += int64(len(l.chunks[0]))
		l.chunks[0] = nil
		l.chunks = l.chunks[1:]
	}
}

// from returns the bytes from offset taken on, and how many before them
// are no longer kept (lost), and starts a new stream that has been sent
// them.
func (l *stdinLog) from(taken int64) (rest [][]byte, lost int64) {
	if taken < l.first {
		lost, taken = l.first-taken, l.first
	}
	off := l.first
	for _, c := range l.chunks {
		end := off + int64(len(c))
		switch {
		case end <= taken:
		case off >= taken:
			rest = append(rest, c)
		default:
			rest = append(rest, c[taken-off:])
		}
		off = end
	}
	*l = stdinLog{}
	for _, c := range rest {
		l.add(c)
	}
	return rest, lost
}
