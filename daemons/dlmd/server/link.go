package server

import (
	"sync"

	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// sendLog is the sending half of a reliable link (see PeerMessage): the
// messages pushed and not yet acknowledged, numbered from 1, and the
// unnumbered ones (pings, pongs) waiting to go once. One sender goroutine
// at a time drains it onto the link's current stream; a reconnection
// rewinds it to what the other side has received, and the sender of the
// stream that broke stops (its generation is over).
type sendLog struct {
	mu     sync.Mutex
	msgs   []*dlmpeerv1.PeerMessage // not acknowledged, seq ascending
	next   uint64                   // the seq of the next push
	cursor uint64                   // the seq of the next message to hand out
	once   []*dlmpeerv1.PeerMessage
	gen    uint64
	wake   chan struct{}
	closed bool
}

func newSendLog() *sendLog {
	return &sendLog{next: 1, cursor: 1, wake: make(chan struct{}, 1)}
}

func (l *sendLog) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// push numbers m and queues it; false once the log is closed.
func (l *sendLog) push(m *dlmpeerv1.PeerMessage) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	m.Seq = l.next
	l.next++
	l.msgs = append(l.msgs, m)
	l.mu.Unlock()
	l.signal()
	return true
}

// pushOnce queues an unnumbered message: sent once, on the current stream.
func (l *sendLog) pushOnce(m *dlmpeerv1.PeerMessage) bool {
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
func (l *sendLog) ack(n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ackLocked(n)
}

func (l *sendLog) ackLocked(n uint64) {
	i := 0
	for i < len(l.msgs) && l.msgs[i].Seq <= n {
		i++
	}
	if i > 0 {
		l.msgs = append(l.msgs[:0:0], l.msgs[i:]...)
	}
	if l.cursor <= n {
		l.cursor = n + 1
	}
}

// rewind starts a new stream: the other side has every message up to n;
// the rest is handed out again. It returns the new stream's generation.
func (l *sendLog) rewind(n uint64) uint64 {
	l.mu.Lock()
	l.ackLocked(n)
	l.cursor = n + 1
	if len(l.msgs) > 0 && l.cursor < l.msgs[0].Seq {
		l.cursor = l.msgs[0].Seq
	}
	l.once = nil // they belonged to the old stream
	l.gen++
	g := l.gen
	l.mu.Unlock()
	l.signal()
	return g
}

// reset forgets everything: the other side is a new dlmd, numbering starts
// again from 1. It returns the new generation.
func (l *sendLog) reset() uint64 {
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
func (l *sendLog) take(gen uint64, done <-chan struct{}) (items []*dlmpeerv1.PeerMessage, ok bool) {
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
			if m.Seq >= l.cursor {
				items = append(items, m)
			}
		}
		if len(l.msgs) > 0 {
			if last := l.msgs[len(l.msgs)-1].Seq; last >= l.cursor {
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

// pending reports how many messages wait for an acknowledgement.
func (l *sendLog) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

func (l *sendLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.signal()
}

// recvState is the receiving half of a reliable link: the last seq
// delivered. Receivers of two streams of the same link (an old one not yet
// seen broken, and its replacement) deliver through it one at a time, in
// order and once.
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

// accept runs f on m when m is the next message of the link (or is not
// numbered), under the link's lock so that deliveries keep their order.
func (r *recvState) accept(m *dlmpeerv1.PeerMessage, f func()) verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch seq := m.GetSeq(); {
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

// received returns the last seq delivered.
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
