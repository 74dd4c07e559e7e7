// Package peerlink is a reliable, ordered link between two daemons that
// outlives the gRPC streams carrying it: a stream breaks, the dialling side
// opens another, and nothing is lost or delivered twice while both daemons
// stay up.
//
// Each direction of a link numbers its messages (seq, from 1) and keeps
// them until the other side acknowledges them (ack: every message up to
// that seq was received); unnumbered messages (pings, pongs, pure
// acknowledgements) go once, on the current stream. When a stream is
// opened, the two sides tell each other, in a handshake of the daemon's
// protocol, what they have received; each then rewinds its send log to
// that point (Link.Rewind) and resends the rest, or, facing a new daemon,
// starts again from 1 (Link.Reset).
//
// The package is generic over the message type M (a generated proto
// message); a Codec reads and writes its seq and ack fields. Out keeps
// the dialling side's link carried, redialling with backoff and pinging,
// and ending a stream on which the peer stays silent (OutConfig.Silent);
// Carry runs one stream of either side. Every goroutine the package starts
// is joined: Carry returns after its sender; Out.Close (or Stop and Wait)
// returns after all of Out's.
package peerlink

import (
	"sync"
)

// Codec reads and writes the link fields of a message of type M.
type Codec[M any] interface {
	Seq(m M) uint64
	SetSeq(m M, seq uint64)
	Ack(m M) uint64
	// AckOnly returns an unnumbered message that carries only ack n.
	AckOnly(n uint64) M
}

// Link is one direction's state of a link: what it sent and what it
// received. Its methods are safe for concurrent use.
type Link[M any] struct {
	codec Codec[M]
	log   sendLog[M]
	recv  recvState
}

// New returns an empty link (numbering starts at 1).
func New[M any](c Codec[M]) *Link[M] {
	return &Link[M]{codec: c, log: sendLog[M]{codec: c, next: 1, cursor: 1, wake: make(chan struct{}, 1)}}
}

// Push numbers m and queues it until the other side acknowledges it; false
// once the link is closed.
func (l *Link[M]) Push(m M) bool { return l.log.push(m) }

// PushOnce queues an unnumbered message: sent once, on the current
// stream; false once the link is closed.
func (l *Link[M]) PushOnce(m M) bool { return l.log.pushOnce(m) }

// Received returns the seq of the last numbered message delivered.
func (l *Link[M]) Received() uint64 { return l.recv.received() }

// Pending reports how many numbered messages wait for an acknowledgement.
func (l *Link[M]) Pending() int { return l.log.pending() }

// Rewind starts a new stream: the other side has every message up to n;
// the rest is handed out again. It returns the new stream's generation,
// which Carry sends under; the sender of an earlier generation stops.
func (l *Link[M]) Rewind(n uint64) uint64 { return l.log.rewind(n) }

// Reset starts a new stream with a new daemon on the other side: what was
// sent and received is forgotten, numbering starts again from 1 both
// ways. It returns the new stream's generation.
func (l *Link[M]) Reset() uint64 {
	l.recv.reset()
	return l.log.reset()
}

// Close ends the link: nothing more is pushed or sent.
func (l *Link[M]) Close() { l.log.close() }

// sendLog is the sending half of a link: the messages pushed and not yet
// acknowledged, and the unnumbered ones waiting to go once. One sender
// goroutine at a time drains it onto the link's current stream; a new
// stream rewinds it, and the sender of the stream that broke stops (its
// generation is over).
type sendLog[M any] struct {
	codec  Codec[M]
	mu     sync.Mutex
	msgs   []M    // not acknowledged, seq ascending
	next   uint64 // the seq of the next push
	cursor uint64 // the seq of the next message to hand out
	once   []M
	gen    uint64
	wake   chan struct{}
	closed bool
}

func (l *sendLog[M]) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *sendLog[M]) push(m M) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.codec.SetSeq(m, l.next)
	l.next++
	l.msgs = append(l.msgs, m)
	l.mu.Unlock()
	l.signal()
	return true
}

func (l *sendLog[M]) pushOnce(m M) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.once = append(l.once, m)
	l.mu.Unlock()
	l.signal()
	return true
}

// ack forgets the messages up to seq n: the other side has them.
func (l *sendLog[M]) ack(n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ackLocked(n)
}

func (l *sendLog[M]) ackLocked(n uint64) {
	i := 0
	for i < len(l.msgs) && l.codec.Seq(l.msgs[i]) <= n {
		i++
	}
	if i > 0 {
		l.msgs = append(l.msgs[:0:0], l.msgs[i:]...)
	}
	if l.cursor <= n {
		l.cursor = n + 1
	}
}

func (l *sendLog[M]) rewind(n uint64) uint64 {
	l.mu.Lock()
	l.ackLocked(n)
	l.cursor = n + 1
	if len(l.msgs) > 0 && l.cursor < l.codec.Seq(l.msgs[0]) {
		l.cursor = l.codec.Seq(l.msgs[0])
	}
	l.once = nil // they belonged to the old stream
	l.gen++
	g := l.gen
	l.mu.Unlock()
	l.signal()
	return g
}

func (l *sendLog[M]) reset() uint64 {
	l.mu.Lock()
	l.msgs, l.once = nil, nil
	l.next, l.cursor = 1, 1
	l.gen++
	g := l.gen
	l.mu.Unlock()
	l.signal()
	return g
}

// take waits for messages to send on the stream of generation gen: the
// unnumbered first, then the numbered not handed out yet. ok is false
// once the log is closed, done is closed or gen is over.
func (l *sendLog[M]) take(gen uint64, done <-chan struct{}) (items []M, ok bool) {
	for {
		l.mu.Lock()
		if l.closed || l.gen != gen {
			l.mu.Unlock()
			l.signal() // another generation's sender may be waiting too
			return nil, false
		}
		items = l.once
		l.once = nil
		for _, m := range l.msgs {
			if l.codec.Seq(m) >= l.cursor {
				items = append(items, m)
			}
		}
		if len(l.msgs) > 0 {
			if last := l.codec.Seq(l.msgs[len(l.msgs)-1]); last >= l.cursor {
				l.cursor = last + 1
			}
		}
		l.mu.Unlock()
		if len(items) > 0 {
			return items, true
		}
		select {
		case <-l.wake:
		case <-done:
			return nil, false
		}
	}
}

func (l *sendLog[M]) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

func (l *sendLog[M]) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.signal()
}

// recvState is the receiving half of a link: the last seq delivered.
// Receivers of two streams of the same link (an old one not yet seen
// broken, and its replacement) deliver through it one at a time, in order
// and once.
type recvState struct {
	mu   sync.Mutex
	last uint64
}

// verdict is what to do with a received message.
type verdict int

const (
	deliver   verdict = iota // the next one: hand it on
	duplicate                // already delivered: drop it
	gap                      // messages are missing: the stream is broken
)

// accept runs f when seq is the next of the link (or 0, unnumbered),
// under the link's lock so that deliveries keep their order.
func (r *recvState) accept(seq uint64, f func()) verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case seq == 0:
	case seq <= r.last:
		return duplicate
	case seq > r.last+1:
		return gap
	default:
		r.last = seq
	}
	f()
	return deliver
}

func (r *recvState) received() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *recvState) reset() {
	r.mu.Lock()
	r.last = 0
	r.mu.Unlock()
}
