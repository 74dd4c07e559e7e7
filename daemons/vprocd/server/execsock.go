package server

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// The exec socket (package execwire) serves API.Exec over a connection of
// its own per exec: a caller (ssi exec, client/vproc) starts a program
// without a gRPC connection's set-up, and the handler is the gRPC API's
// own, with the caller's identity and passed files in its context as the
// gRPC server puts them.

// firstFrameWait bounds the wait for a connection's request: a caller
// that connects and says nothing holds nothing for long.
const firstFrameWait = 10 * time.Second

// maxWaitingRequests bounds the connections whose request has not come
// yet; one past it is closed at once.
const maxWaitingRequests = 64

// hangupPoll is how often a reader whose exec does not take the inputs
// already read (a program that does not read its stdin) checks that the
// caller is still connected.
const hangupPoll = 50 * time.Millisecond

// ExecSocket serves the exec socket.
type ExecSocket struct {
	api     *API
	ln      net.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	waiting chan struct{} // a slot per connection whose request has not come
}

// ServeExecSocket serves api's Exec on ln until Stop.
func ServeExecSocket(api *API, ln net.Listener) *ExecSocket {
	ctx, cancel := context.WithCancel(context.Background())
	e := &ExecSocket{api: api, ln: ln, ctx: ctx, cancel: cancel, waiting: make(chan struct{}, maxWaitingRequests)}
	e.wg.Add(1)
	go e.accept()
	return e
}

// Stop closes the socket and ends every exec served (their programs are
// killed, detached ones run on), as stopping the gRPC server does.
func (e *ExecSocket) Stop() {
	e.ln.Close()
	e.cancel()
	e.wg.Wait()
}

func (e *ExecSocket) accept() {
	defer e.wg.Done()
	var delay time.Duration
	for {
		c, err := e.ln.Accept()
		if err != nil {
			if e.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, say: wait, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			e.api.s.log.WithError(err).Warn("exec socket: accept")
			select {
			case <-time.After(delay):
			case <-e.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		select {
		case e.waiting <- struct{}{}:
		default:
			c.Close() // too many callers that said nothing yet
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serve(uc)
		}()
	}
}

// serve runs the exec of one connection.
func (e *ExecSocket) serve(c *net.UnixConn) {
	defer c.Close()
	// An exec ended (its caller gone, vprocd stopping) unblocks a write
	// to a caller that does not read, and the reader.
	stopped := context.AfterFunc(e.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stopped()
	fc := localapi.NewFrameConn(c)
	kind, msg, files, caller, err := e.request(fc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(localapi.WithCaller(e.ctx, caller, files))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// Files the handler did not take (a bad request) are closed here.
	defer localapi.FilesFrom(ctx).CloseFiles()
	first := &vprocv1.ExecInput{}
	if kind != execwire.KindInput {
		sendStatus(fc, status.New(codes.InvalidArgument, "vproc: the first frame must be the request"))
		return
	}
	if err := proto.Unmarshal(msg, first); err != nil {
		sendStatus(fc, status.New(codes.InvalidArgument, "vproc: the request does not decode: "+err.Error()))
		return
	}
	s := &sockStream{ctx: ctx, fc: fc, first: first, in: make(chan sockInput, 1)}
	go s.read(cancel)
	if err := e.api.Exec(s); err != nil {
		sendStatus(fc, status.Convert(err))
	}
}

// request reads a connection's first frame, within firstFrameWait, and
// the caller's identity; it holds one of the waiting slots meanwhile. The
// frames after it are read from the same fc, which then refuses files.
func (e *ExecSocket) request(fc *localapi.FrameConn) (kind byte, msg []byte, files []*os.File, caller localapi.Cred, err error) {
	defer func() { <-e.waiting }()
	c := fc.Conn()
	if caller, err = localapi.PeerCred(c); err != nil {
		return 0, nil, nil, caller, err
	}
	_ = c.SetReadDeadline(time.Now().Add(firstFrameWait))
	kind, msg, files, err = fc.Read()
	if e.ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Time{})
	}
	return kind, msg, files, caller, err
}

// sendStatus sends the frame that ends an exec with an error.
func sendStatus(fc *localapi.FrameConn, st *status.Status) {
	b, err := proto.Marshal(st.Proto())
	if err == nil {
		_ = fc.Write(execwire.KindStatus, b, nil)
	}
}

type sockInput struct {
	m   *vprocv1.ExecInput
	err error
}

// sockStream is an exec's stream over the exec socket, as the handler
// sees a gRPC stream.
type sockStream struct {
	ctx   context.Context
	fc    *localapi.FrameConn
	first *vprocv1.ExecInput // returned by the first Recv
	in    chan sockInput
	mu    sync.Mutex // Send
}

// read reads the caller's frames after the first until the connection
// ends, which ends the exec (cancel), as a cancelled gRPC stream does; a
// frame that is no input ends it too, the caller told why first.
func (s *sockStream) read(cancel context.CancelFunc) {
	defer cancel()
	for {
		kind, msg, _, err := s.fc.Read()
		if err != nil {
			s.hand(sockInput{err: status.Error(codes.Canceled, "vproc: the caller closed the connection")})
			return
		}
		m := &vprocv1.ExecInput{}
		if kind != execwire.KindInput {
			err = status.Error(codes.InvalidArgument, "vproc: a frame that is not an input")
		} else if uerr := proto.Unmarshal(msg, m); uerr != nil {
			err = status.Error(codes.InvalidArgument, "vproc: an input does not decode: "+uerr.Error())
		}
		if err != nil {
			sendStatus(s.fc, status.Convert(err))
			s.hand(sockInput{err: err})
			return
		}
		if !s.hand(sockInput{m: m}) {
			return
		}
	}
}

// hand gives the handler an input; false when the exec ended first. While
// the handler does not take it (its program does not read its stdin), the
// connection is not read, so a caller gone would go unseen: it is checked
// every hangupPoll, and ends the exec.
func (s *sockStream) hand(in sockInput) bool {
	select {
	case s.in <- in:
		return true
	case <-s.ctx.Done():
		return false
	default:
	}
	t := time.NewTicker(hangupPoll)
	defer t.Stop()
	for {
		select {
		case s.in <- in:
			return true
		case <-s.ctx.Done():
			return false
		case <-t.C:
			if s.fc.HungUp() {
				return false // read's cancel ends the exec
			}
		}
	}
}

func (s *sockStream) Recv() (*vprocv1.ExecInput, error) {
	if m := s.first; m != nil {
		s.first = nil
		return m, nil
	}
	select {
	case r := <-s.in:
		if r.err != nil {
			// Every later Recv says the same.
			s.in <- r
		}
		return r.m, r.err
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *sockStream) Send(m *vprocv1.ExecOutput) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if err := s.fc.Write(execwire.KindOutput, b, nil); err != nil {
		return status.Error(codes.Unavailable, "vproc: the caller's connection: "+err.Error())
	}
	return nil
}

func (s *sockStream) Context() context.Context     { return s.ctx }
func (s *sockStream) SetHeader(metadata.MD) error  { return nil }
func (s *sockStream) SendHeader(metadata.MD) error { return nil }
func (s *sockStream) SetTrailer(metadata.MD)       {}

func (s *sockStream) SendMsg(m any) error { return localapi.SendMsgAs(m, s.Send) }
func (s *sockStream) RecvMsg(m any) error { return localapi.RecvMsgAs(m, s.Recv) }
