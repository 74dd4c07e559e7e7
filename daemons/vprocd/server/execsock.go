package server

import (
	"context"
	"errors"
	"io"
	"net"
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

// ExecSocket serves the exec socket.
type ExecSocket struct {
	api    *API
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ServeExecSocket serves api's Exec on ln until Stop.
func ServeExecSocket(api *API, ln net.Listener) *ExecSocket {
	ctx, cancel := context.WithCancel(context.Background())
	e := &ExecSocket{api: api, ln: ln, ctx: ctx, cancel: cancel}
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
	caller, err := localapi.PeerCred(c)
	if err != nil {
		return
	}
	fc := localapi.NewFrameConn(c)
	_ = c.SetReadDeadline(time.Now().Add(firstFrameWait))
	kind, msg, files, err := fc.Read()
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(localapi.WithCaller(e.ctx, caller, files))
	defer cancel()
	// An exec ended (its caller gone, vprocd stopping) unblocks a write
	// to a caller that does not read, and the reader.
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
// ends, which ends the exec (cancel), as a cancelled gRPC stream does.
func (s *sockStream) read(cancel context.CancelFunc) {
	defer cancel()
	for {
		kind, msg, _, err := s.fc.Read()
		var m *vprocv1.ExecInput
		if err == nil && kind != execwire.KindInput {
			err = status.Error(codes.InvalidArgument, "vproc: a frame that is not an input")
		}
		if err == nil {
			m = &vprocv1.ExecInput{}
			if uerr := proto.Unmarshal(msg, m); uerr != nil {
				err = status.Error(codes.InvalidArgument, "vproc: an input does not decode: "+uerr.Error())
			}
		}
		if err != nil {
			if !isStatus(err) {
				err = status.Error(codes.Canceled, "vproc: the caller closed the connection")
			}
			select {
			case s.in <- sockInput{err: err}:
			case <-s.ctx.Done():
			}
			return
		}
		select {
		case s.in <- sockInput{m: m}:
		case <-s.ctx.Done():
			return
		}
	}
}

func isStatus(err error) bool {
	_, ok := status.FromError(err)
	return ok && err != io.EOF
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
