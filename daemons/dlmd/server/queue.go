package server

import "sync"

// queue is a FIFO of outgoing messages: the loop pushes without blocking
// (it must never wait for one session) and one sender goroutine drains it
// onto a stream. It is bounded by its producers: a session's receiver
// waits (waitRoom) before handing the loop a new request while the queue
// holds more than its bound, so a client that does not read its replies
// stops being read, and gRPC's flow control pushes back on it.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	wake   chan struct{}
	room   chan struct{}
	closed bool
}

func newQueue[T any]() *queue[T] {
	return &queue[T]{wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push appends v; it reports false once the queue is closed.
func (q *queue[T]) push(v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	signal(q.wake)
	return true
}

// take waits for items and returns all of them; ok is false once the queue
// is closed (and drained) or done is closed.
func (q *queue[T]) take(done <-chan struct{}) (items []T, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			items, q.items = q.items, nil
			q.mu.Unlock()
			signal(q.room)
			return items, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.wake:
		case <-done:
			return nil, false
		}
	}
}

// waitRoom waits until the queue holds at most bound items (or is
// closed); it reports false when done is closed first.
func (q *queue[T]) waitRoom(bound int, done <-chan struct{}) bool {
	for {
		q.mu.Lock()
		full := len(q.items) > bound && !q.closed
		q.mu.Unlock()
		if !full {
			return true
		}
		select {
		case <-q.room:
		case <-done:
			return false
		}
	}
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.wake)
	signal(q.room)
}

// signal wakes the one waiter of c, if any, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
