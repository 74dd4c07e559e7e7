package peerlink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openssi/openssi/internal/rpc"
)

// Stream is one gRPC stream carrying a link, either side of a
// bidirectional stream (grpc.BidiStreamingClient or
// grpc.BidiStreamingServer of M's message type).
type Stream[M any] interface {
	Send(M) error
	Recv() (M, error)
}

// Handler receives what a stream brings, after the link has applied the
// message's acknowledgement.
type Handler[M any] struct {
	// Deliver gets the numbered messages, in order and once across the
	// streams of the link. It runs under the link's receive lock: it must
	// hand the message on, not wait for work that needs the link.
	Deliver func(m M)
	// Control gets the unnumbered messages (pings, pongs, pure
	// acknowledgements); nil drops them.
	Control func(m M)
	// Check, when set, vets every message the stream brings before the
	// link applies it (its acknowledgement included): an error ends the
	// stream with that error, the message neither delivered nor
	// acknowledged. A daemon refuses with it what its peer may not say,
	// for example a message naming another node than the one the peer's
	// certificate names.
	Check func(m M) error
}

// ErrSilent is wrapped by the error an Out's stream ended with when the
// peer sent nothing on it for longer than OutConfig.Silent.
var ErrSilent = errors.New("peerlink: the peer is silent")

// ErrLostMessages is wrapped by Carry's error when a stream skipped
// numbered messages (the stream is broken; a new one resends them).
var ErrLostMessages = errors.New("peerlink: the stream lost messages")

// AckEvery is how many messages a link delivers before its sender
// acknowledges them in a message of its own; the daemon's pings and pongs
// carry an acknowledgement anyway, so the other side keeps at most that
// many.
const AckEvery = 256

// Carry runs link l on stream st, sending under generation gen (from
// l.Rewind or l.Reset), until st breaks, a message is missing, ctx ends or
// a newer stream takes the link over (gen is over). A sender goroutine
// sends what the link hands out; the calling goroutine receives. Carry
// returns the error that ended it once the sender has stopped.
//
// On the server side of a stream, the receive loop only sees that the
// link was closed or taken over at the next message it receives; the
// daemon's pings make that soon.
func Carry[M any](ctx context.Context, l *Link[M], st Stream[M], gen uint64, h Handler[M]) error {
	ctx, cancel := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		defer cancel()
		l.pump(ctx, gen, st.Send)
	}()
	defer func() { cancel(); <-sent }()
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			// The link was closed or a newer stream carries it: end
			// this one, so that the other side meets what is there now.
			return err
		}
		if h.Check != nil {
			if err := h.Check(m); err != nil {
				return err
			}
		}
		if a := l.codec.Ack(m); a != 0 {
			l.log.ack(a)
		}
		seq := l.codec.Seq(m)
		if seq == 0 {
			if h.Control != nil {
				h.Control(m)
			}
			continue
		}
		if l.recv.accept(seq, func() { h.Deliver(m) }) == gap {
			return fmt.Errorf("message %d after %d: %w", seq, l.recv.received(), ErrLostMessages)
		}
	}
}

// pump sends what the log hands out for generation gen until the stream
// ends, acknowledging along what the link has delivered.
func (l *Link[M]) pump(ctx context.Context, gen uint64, send func(M) error) {
	var acked uint64
	for {
		items, ok := l.log.take(gen, ctx.Done())
		if !ok {
			return
		}
		if n := l.recv.received(); n >= acked+AckEvery {
			acked = n
			if err := send(l.codec.AckOnly(n)); err != nil {
				return
			}
		}
		for _, m := range items {
			if err := send(m); err != nil {
				return
			}
		}
	}
}

// OutConfig is what an Out needs from its daemon.
type OutConfig[M any] struct {
	// Open dials the peer, opens a stream with ctx and makes the
	// daemon's handshake, and returns the stream and the generation to
	// send under (from l.Rewind with what the peer has received, or
	// l.Reset when the peer is a new daemon). ctx is the stream's: it has
	// no deadline (rpc.WithoutTimeout) and ends when the stream should
	// (Stop, or the stream is over); bound the dial with a timeout of its
	// own.
	Open func(ctx context.Context, l *Link[M]) (Stream[M], uint64, error)
	// Handler receives what the streams bring.
	Handler Handler[M]
	// Ping, when set, is queued unnumbered (PushOnce) when a stream is up
	// and then every PingEvery while it lasts.
	Ping      func() M
	PingEvery time.Duration
	// Silent, when set, bounds how long a stream may bring nothing (the
	// peer's answers to Ping keep a live one busy): past it the stream is
	// taken for dead (a peer up but silent, its traffic black-holed, a
	// half-open connection) and ended with ErrSilent; Out redials. It is
	// checked every PingEvery (and needs Ping), so a silent stream ends
	// within Silent + PingEvery. It also caps the backoff between
	// attempts at Silent/2: once the peer is back, the link is carried
	// again well before what waits on it would be given up.
	Silent time.Duration
	// Down is told why a stream ended (or could not be opened) before the
	// next attempt; up reports whether Open had succeeded. Optional.
	Down func(up bool, err error)
	// Group, when set, counts Out's goroutines, so that its owner can
	// join every Out it ever started with Group.Wait (for an Out stopped
	// from a goroutine that Handler may wait for, where Close would
	// deadlock).
	Group *sync.WaitGroup
}

// Backoff between attempts: from minDelay, doubling up to maxDelay, back
// to minDelay after a stream that was up.
const (
	minDelay = 20 * time.Millisecond
	maxDelay = time.Second
)

// Out is the dialling side of a link: it keeps the link carried by a
// stream, opening a new one whenever the last broke, until Stop.
type Out[M any] struct {
	link   *Link[M]
	cfg    OutConfig[M]
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Dial starts an Out for link l: a goroutine keeps it carried until Stop.
func Dial[M any](l *Link[M], cfg OutConfig[M]) *Out[M] {
	ctx, cancel := context.WithCancel(context.Background())
	o := &Out[M]{link: l, cfg: cfg, ctx: ctx, cancel: cancel}
	o.wg.Add(1)
	if cfg.Group != nil {
		cfg.Group.Add(1)
	}
	go func() {
		defer func() {
			if cfg.Group != nil {
				cfg.Group.Done()
			}
		}()
		defer o.wg.Done()
		o.run()
	}()
	return o
}

// Link returns the link Out carries.
func (o *Out[M]) Link() *Link[M] { return o.link }

// Stopped is closed once Stop was called.
func (o *Out[M]) Stopped() <-chan struct{} { return o.ctx.Done() }

// Stop closes the link and ends its stream; it does not wait (see Wait).
func (o *Out[M]) Stop() {
	o.cancel()
	o.link.Close()
}

// Wait returns once every goroutine of Out has returned (after Stop).
func (o *Out[M]) Wait() { o.wg.Wait() }

// Close stops Out and waits for its goroutines.
func (o *Out[M]) Close() {
	o.Stop()
	o.Wait()
}

func (o *Out[M]) run() {
	delay, most := minDelay, maxDelay
	if s := o.cfg.Silent / 2; s > 0 && s < most {
		most = max(s, minDelay)
	}
	for o.ctx.Err() == nil {
		up, err := o.carry()
		if o.ctx.Err() != nil {
			return
		}
		if o.cfg.Down != nil {
			o.cfg.Down(up, err)
		}
		if up {
			// The link was carried: redial promptly.
			delay = minDelay
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-o.ctx.Done():
			t.Stop()
			return
		}
		if delay = 2 * delay; delay > most {
			delay = most
		}
	}
}

// carry opens one stream and carries the link on it until it ends.
func (o *Out[M]) carry() (up bool, err error) {
	ctx, cancel := context.WithCancel(rpc.WithoutTimeout(o.ctx))
	defer cancel()
	st, gen, err := o.cfg.Open(ctx, o.link)
	if err != nil {
		return false, err
	}
	w := &watched[M]{Stream: st}
	w.heard()
	var silent atomic.Bool
	var pinger sync.WaitGroup
	if o.cfg.Ping != nil {
		pinger.Add(1)
		go func() {
			defer pinger.Done()
			if o.ping(ctx, w) {
				silent.Store(true)
				cancel()
			}
		}()
	}
	err = Carry(ctx, o.link, w, gen, o.cfg.Handler)
	cancel()
	pinger.Wait()
	if silent.Load() {
		err = fmt.Errorf("nothing received for %v: %w", o.cfg.Silent, ErrSilent)
	}
	return true, err
}

// ping queues a ping at once and then every PingEvery until ctx ends; it
// returns true, at once, when w has brought nothing for longer than
// Silent.
func (o *Out[M]) ping(ctx context.Context, w *watched[M]) bool {
	t := time.NewTicker(o.cfg.PingEvery)
	defer t.Stop()
	for {
		if o.cfg.Silent > 0 && w.quiet() > o.cfg.Silent {
			return true
		}
		o.link.PushOnce(o.cfg.Ping())
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// watched is a stream that notes when it last brought something.
type watched[M any] struct {
	Stream[M]
	last atomic.Int64 // unix nanoseconds
}

func (w *watched[M]) heard() { w.last.Store(time.Now().UnixNano()) }

// quiet is how long the stream has brought nothing.
func (w *watched[M]) quiet() time.Duration { return time.Since(time.Unix(0, w.last.Load())) }

func (w *watched[M]) Recv() (M, error) {
	m, err := w.Stream.Recv()
	if err == nil {
		w.heard()
	}
	return m, err
}
