package vproc

import (
	"context"
	"net"
	"os"
	"sync"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// An exec goes over vprocd's exec socket (package execwire), a connection
// of its own, where vprocd has one: the same messages as the gRPC
// stream's, without HTTP/2 on the way. A vprocd without it (older) gets
// the gRPC stream.

// dialExec connects to the exec socket next to socket; nil when there is
// none that answers (the caller then uses the gRPC stream). The
// connection is closed when ctx ends, which ends the exec.
func dialExec(ctx context.Context, socket string, files []*os.File) *sockExec {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", execwire.SocketPath(socket))
	if err != nil {
		return nil
	}
	return newSockExec(ctx, c.(*net.UnixConn), files)
}

func newSockExec(ctx context.Context, c *net.UnixConn, files []*os.File) *sockExec {
	s := &sockExec{ctx: ctx, fc: localapi.NewFrameConn(c), files: files}
	s.stop = context.AfterFunc(ctx, func() { c.Close() })
	return s
}

// sockExec is the client's end of an exec over the exec socket, as a
// gRPC stream (vprocv1.Vproc_ExecClient).
type sockExec struct {
	ctx   context.Context
	fc    *localapi.FrameConn
	stop  func() bool
	mu    sync.Mutex // Send
	files []*os.File // sent with the first frame
	end   error      // what Recv returns once the exec ended
	// pending is a frame read before the stream was made (SentExec).
	pending *execwire.Frame
}

func (s *sockExec) Send(m *vprocv1.ExecInput) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	files := s.files
	s.files = nil
	if err := s.fc.Write(execwire.KindInput, b, files); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return nil
}

// Recv returns vprocd's next message; its error, a status, once the exec
// ended with one; io.EOF when vprocd closed the connection.
func (s *sockExec) Recv() (*vprocv1.ExecOutput, error) {
	if s.end != nil {
		return nil, s.end
	}
	var (
		kind  byte
		msg   []byte
		files []*os.File
		err   error
	)
	if p := s.pending; p != nil {
		kind, msg, s.pending = p.Kind, p.Msg, nil
	} else {
		kind, msg, files, err = s.fc.Read()
	}
	for _, f := range files {
		f.Close() // vprocd sends none
	}
	switch {
	case err != nil:
		if s.ctx.Err() != nil {
			err = status.FromContextError(s.ctx.Err()).Err()
		}
		s.end = err
	case kind == execwire.KindStatus:
		st := &spb.Status{}
		if err := proto.Unmarshal(msg, st); err != nil {
			s.end = status.Error(codes.Internal, "vproc: vprocd's status does not decode: "+err.Error())
		} else {
			s.end = status.ErrorProto(st)
		}
	case kind != execwire.KindOutput:
		s.end = status.Errorf(codes.Internal, "vproc: vprocd sent a frame of kind %d", kind)
	default:
		m := &vprocv1.ExecOutput{}
		if err := proto.Unmarshal(msg, m); err != nil {
			s.end = status.Error(codes.Internal, "vproc: vprocd's output does not decode: "+err.Error())
			break
		}
		return m, nil
	}
	s.close()
	return nil, s.end
}

func (s *sockExec) close() {
	s.stop()
	s.fc.Close()
}

func (s *sockExec) Header() (metadata.MD, error) { return nil, nil }
func (s *sockExec) Trailer() metadata.MD         { return nil }
func (s *sockExec) CloseSend() error             { return nil }
func (s *sockExec) Context() context.Context     { return s.ctx }

func (s *sockExec) SendMsg(m any) error { return localapi.SendMsgAs(m, s.Send) }
func (s *sockExec) RecvMsg(m any) error { return localapi.RecvMsgAs(m, s.Recv) }
