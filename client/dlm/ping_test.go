package dlm

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// pingFake answers a Cancel with status (or not at all when mute).
type pingFake struct {
	dlmv1.UnimplementedDlmServer
	status dlmv1.Status
	mute   bool
}

func (f *pingFake) Session(st grpc.BidiStreamingServer[dlmv1.ClientMessage, dlmv1.ServerMessage]) error {
	if err := st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Hello{Hello: &dlmv1.SessionHello{Node: 1, Client: 1}}}); err != nil {
		return err
	}
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if f.mute || m.GetCancel() == nil {
			continue
		}
		if err := st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: &dlmv1.Reply{Tag: m.GetTag(), Status: f.status}}}); err != nil {
			return err
		}
	}
}

func TestPing(t *testing.T) {
	for _, tt := range []struct {
		name string
		fake pingFake
		want error // nil: answered
	}{
		{"unknown lock: answered", pingFake{status: dlmv1.Status_STATUS_UNKNOWN_LOCK}, nil},
		{"ok: answered", pingFake{status: dlmv1.Status_STATUS_OK}, nil},
		{"other refusal", pingFake{status: dlmv1.Status_STATUS_LIMIT}, ErrLimit},
		{"no answer", pingFake{mute: true}, context.DeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "dlmd.sock")
			ln, _, err := localapi.Listen(socket, "")
			if err != nil {
				t.Fatal(err)
			}
			g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
			dlmv1.RegisterDlmServer(g, &tt.fake)
			go func() { _ = g.Serve(ln) }()
			defer g.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := New(ctx, WithSocket(socket))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer pcancel()
			err = c.Ping(pctx)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Ping: %v, want %v", err, tt.want)
			}
		})
	}
}
