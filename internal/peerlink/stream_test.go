package peerlink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

var errBroken = errors.New("stream broken")

// pipeEnd is one end of an in-memory stream. Like a gRPC client stream, it
// breaks when its context ends.
type pipeEnd struct {
	in   <-chan *msg
	out  chan<- *msg
	done <-chan struct{}
	ctx  context.Context
}

func (e pipeEnd) Send(m *msg) error {
	c := *m
	select {
	case e.out <- &c:
		return nil
	case <-e.done:
		return errBroken
	case <-e.ctx.Done():
		return e.ctx.Err()
	}
}

func (e pipeEnd) Recv() (*msg, error) {
	select {
	case m := <-e.in:
		return m, nil
	case <-e.done:
		return nil, errBroken
	case <-e.ctx.Done():
		return nil, e.ctx.Err()
	}
}

// pipe is an in-memory stream; cut breaks it.
type pipe struct {
	client, server pipeEnd
	cut            func()
}

func newPipe(ctx context.Context) pipe {
	a, b := make(chan *msg), make(chan *msg)
	done := make(chan struct{})
	var once sync.Once
	return pipe{
		client: pipeEnd{in: b, out: a, done: done, ctx: ctx},
		server: pipeEnd{in: a, out: b, done: done, ctx: context.Background()},
		cut:    func() { once.Do(func() { close(done) }) },
	}
}

// peer is the accepting side of the test: it carries its link on every
// stream the Out opens, each in a goroutine it joins in stop.
type peer struct {
	t     *testing.T
	link  *Link[*msg]
	got   chan string // bodies delivered, in order
	pings chan string
	mu    sync.Mutex
	cuts  []func()
	wg    sync.WaitGroup
}

func newPeer(t *testing.T) *peer {
	return &peer{t: t, link: newTestLink(), got: make(chan string, 100), pings: make(chan string, 100)}
}

// open is the Out's Open: a new pipe, and the handshake done directly on
// the two links (each side rewinds to what the other has received).
func (p *peer) open(ctx context.Context, l *Link[*msg]) (Stream[*msg], uint64, error) {
	pp := newPipe(ctx)
	gen := p.link.Rewind(l.Received())
	p.mu.Lock()
	p.cuts = append(p.cuts, pp.cut)
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = Carry(context.Background(), p.link, pp.server, gen, Handler[*msg]{
			Deliver: func(m *msg) { p.got <- m.body },
			Control: func(m *msg) {
				if m.body != "" {
					p.pings <- m.body
				}
			},
		})
	}()
	return pp.client, l.Rewind(p.link.Received()), nil
}

// cut breaks the current stream.
func (p *peer) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts[len(p.cuts)-1]()
}

// stop breaks every stream and joins the carrying goroutines.
func (p *peer) stop() {
	p.mu.Lock()
	for _, c := range p.cuts {
		c()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func expect(t *testing.T, ch <-chan string, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case s := <-ch:
			got = append(got, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestOutResendsAcrossStreams: messages pushed before, during and after a
// broken stream arrive once each, in order, both ways; Close joins every
// goroutine.
func TestOutResendsAcrossStreams(t *testing.T) {
	srv := newPeer(t)
	fromSrv := make(chan string, 100)
	var downs []bool
	var downMu sync.Mutex
	var group sync.WaitGroup
	cli := newTestLink()
	o := Dial(cli, OutConfig[*msg]{
		Open:      srv.open,
		Handler:   Handler[*msg]{Deliver: func(m *msg) { fromSrv <- m.body }},
		Ping:      func() *msg { return &msg{body: "ping"} },
		PingEvery: time.Hour, // one at the start of each stream
		Down: func(up bool, _ error) {
			downMu.Lock()
			downs = append(downs, up)
			downMu.Unlock()
		},
		Group: &group,
	})
	for i := 1; i <= 3; i++ {
		cli.Push(&msg{body: fmt.Sprint("a", i)})
	}
	expect(t, srv.pings, "ping")
	expect(t, srv.got, "a1", "a2", "a3")
	srv.link.Push(&msg{body: "r1"})
	expect(t, fromSrv, "r1")

	srv.cut()
	cli.Push(&msg{body: "a4"})
	srv.link.Push(&msg{body: "r2"})
	expect(t, srv.pings, "ping") // the next stream is up
	cli.Push(&msg{body: "a5"})
	expect(t, srv.got, "a4", "a5")
	expect(t, fromSrv, "r2")

	o.Close()
	group.Wait() // returns at once: Close joined Out's goroutines
	srv.stop()
	if cli.Push(&msg{}) {
		t.Fatal("a push after Close must fail")
	}
	downMu.Lock()
	defer downMu.Unlock()
	if !slices.Equal(downs, []bool{true}) {
		t.Fatalf("Down calls: %v, want one, for a stream that was up", downs)
	}
	select {
	case s := <-srv.got:
		t.Fatalf("delivered again: %s", s)
	case s := <-fromSrv:
		t.Fatalf("delivered again: %s", s)
	default:
	}
}

// TestOutCloseWhileUnreachable: Close returns while Out waits between two
// failed attempts.
func TestOutCloseWhileUnreachable(t *testing.T) {
	failed := make(chan bool, 100)
	o := Dial(newTestLink(), OutConfig[*msg]{
		Open: func(context.Context, *Link[*msg]) (Stream[*msg], uint64, error) {
			return nil, 0, errors.New("unreachable")
		},
		Down: func(up bool, _ error) { failed <- up },
	})
	if up := <-failed; up {
		t.Fatal("a failed Open reported up")
	}
	o.Close()
	select {
	case <-o.Stopped():
	default:
		t.Fatal("Stopped not closed after Close")
	}
}

// script is a stream that receives the given messages, then says so
// (read: Carry has handled them all) and blocks until its context ends; it
// discards what it sends.
type script struct {
	ctx  context.Context
	msgs []*msg
	read chan struct{}
}

func (s *script) Send(*msg) error { return nil }

func (s *script) Recv() (*msg, error) {
	if len(s.msgs) == 0 {
		close(s.read)
		<-s.ctx.Done()
		return nil, s.ctx.Err()
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func TestCarry(t *testing.T) {
	errRefused := errors.New("refused")
	tests := []struct {
		name      string
		in        []*msg
		delivered []string
		control   []string
		pending   int   // of the two messages the link pushed first
		end       error // what ends Carry (nil: only the test)
	}{
		{"in order", []*msg{{seq: 1, body: "a"}, {seq: 2, body: "b"}}, []string{"a", "b"}, nil, 2, nil},
		{"duplicates dropped", []*msg{{seq: 1, body: "a"}, {seq: 1, body: "a"}, {seq: 2, body: "b"}}, []string{"a", "b"}, nil, 2, nil},
		{"a gap ends the stream", []*msg{{seq: 1, body: "a"}, {seq: 3, body: "c"}, {seq: 4, body: "d"}}, []string{"a"}, nil, 2, ErrLostMessages},
		{"unnumbered go to control", []*msg{{body: "ping"}, {seq: 1, body: "a"}, {ack: 1}}, []string{"a"}, []string{"ping", ""}, 1, nil},
		{"acks forget what was sent", []*msg{{ack: 2}}, nil, []string{""}, 0, nil},
		{"a refused message ends the stream unapplied", []*msg{{seq: 1, body: "a"}, {seq: 2, body: "refuse", ack: 2}, {seq: 3, body: "c"}}, []string{"a"}, nil, 2, errRefused},
		{"a refused control message too", []*msg{{body: "ping"}, {body: "refuse", ack: 1}, {seq: 1, body: "a"}}, nil, []string{"ping"}, 2, errRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLink()
			l.Push(&msg{})
			l.Push(&msg{})
			ctx, cancel := context.WithCancel(context.Background())
			var delivered, control []string
			h := Handler[*msg]{
				Deliver: func(m *msg) { delivered = append(delivered, m.body) },
				Control: func(m *msg) {
					control = append(control, m.body)
				},
				Check: func(m *msg) error {
					if m.body == "refuse" {
						return errRefused
					}
					return nil
				},
			}
			st := &script{ctx: ctx, msgs: tt.in, read: make(chan struct{})}
			done := make(chan error, 1)
			go func() { done <- Carry(ctx, l, st, l.Rewind(0), h) }()
			if tt.end != nil {
				if err := <-done; !errors.Is(err, tt.end) {
					t.Fatalf("Carry = %v, want %v", err, tt.end)
				}
				cancel()
			} else {
				select {
				case <-st.read:
				case err := <-done:
					t.Fatalf("Carry ended early: %v", err)
				}
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("Carry = %v, want context.Canceled", err)
				}
			}
			if !slices.Equal(delivered, tt.delivered) || !slices.Equal(control, tt.control) {
				t.Fatalf("delivered %q, control %q; want %q, %q", delivered, control, tt.delivered, tt.control)
			}
			if l.Pending() != tt.pending {
				t.Fatalf("pending %d, want %d", l.Pending(), tt.pending)
			}
		})
	}
}

// TestOutEndsASilentStream: a stream on which the peer sends nothing for
// longer than Silent (its answers to pings lost, the connection open) is
// ended with ErrSilent and Out dials again; what was pushed meanwhile
// goes on the next stream.
func TestOutEndsASilentStream(t *testing.T) {
	srv := newPeer(t) // never answers a ping
	downs := make(chan error, 100)
	const silent = 50 * time.Millisecond
	start := time.Now()
	o := Dial(newTestLink(), OutConfig[*msg]{
		Open:      srv.open,
		Ping:      func() *msg { return &msg{body: "ping"} },
		PingEvery: 10 * time.Millisecond,
		Silent:    silent,
		Down:      func(_ bool, err error) { downs <- err },
	})
	defer srv.stop()
	defer o.Close()
	select {
	case err := <-downs:
		if !errors.Is(err, ErrSilent) {
			t.Fatalf("stream ended with %v, want ErrSilent", err)
		}
		if d := time.Since(start); d < silent {
			t.Fatalf("stream ended after %v, before Silent (%v)", d, silent)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a silent stream was not ended")
	}
	o.Link().Push(&msg{body: "after"})
	expect(t, srv.got, "after")
}
