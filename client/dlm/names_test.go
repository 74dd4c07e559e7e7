package dlm

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// grantAll is a dlmd stand-in that grants every lock request at once and
// records the resource names it received.
type grantAll struct {
	dlmv1.UnimplementedDlmServer
	mu   sync.Mutex
	seen []string
}

func (g *grantAll) names() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.seen...)
}

func (g *grantAll) Session(st grpc.BidiStreamingServer[dlmv1.ClientMessage, dlmv1.ServerMessage]) error {
	if err := st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Hello{Hello: &dlmv1.SessionHello{Node: 1, Client: 1}}}); err != nil {
		return err
	}
	for id := uint64(1); ; id++ {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		r := m.GetLock()
		g.mu.Lock()
		g.seen = append(g.seen, r.GetResource())
		g.mu.Unlock()
		if err := st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: &dlmv1.Reply{Tag: m.GetTag(), LockId: id,
			Completion: &dlmv1.Completion{LockId: id, Granted: true, Held: true, Mode: r.GetMode()}}}}); err != nil {
			return err
		}
	}
}

// TestBadNamesRefusedBeforeSending: names the session cannot carry (not
// UTF-8, empty, too long) fail with ErrInvalid and a message that says
// why, are never sent, and leave the session and its locks as they were.
func TestBadNamesRefusedBeforeSending(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "dlmd.sock")
	ln, _, err := localapi.Listen(socket, "")
	if err != nil {
		t.Fatal(err)
	}
	fake := &grantAll{}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	dlmv1.RegisterDlmServer(g, fake)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, WithSocket(socket))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held, err := c.Lock(ctx, "app", "held", EX)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ ls, res, want string }{
		{"app", "bad\xff", `dlm: lock app/"bad\xff": invalid argument: resource name is not valid UTF-8`},
		{"app", "\xc3", `dlm: lock app/"\xc3": invalid argument: resource name is not valid UTF-8`},
		{"ap\xffp", "r", `dlm: lock "ap\xffp"/r: invalid argument: lockspace name is not valid UTF-8`},
		{"app", "", `dlm: lock app/: invalid argument: resource name of 0 bytes: want 1 to 64`},
		{"app", strings.Repeat("é", 33), `dlm: lock app/` + strings.Repeat("é", 33) + `: invalid argument: resource name of 66 bytes: want 1 to 64`},
	}
	for _, tt := range tests {
		_, err := c.Lock(ctx, tt.ls, tt.res, EX)
		if !errors.Is(err, ErrInvalid) || err.Error() != tt.want {
			t.Errorf("Lock(%q, %q): %v\nwant %s (ErrInvalid)", tt.ls, tt.res, err, tt.want)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the session ended: %v", err)
	}
	if _, err := c.Lock(ctx, "app", strings.Repeat("é", 32), EX); err != nil {
		t.Fatalf("lock of a 64-byte UTF-8 name: %v", err)
	}
	if held.Mode() != EX {
		t.Fatalf("the held lock is %v, want EX", held.Mode())
	}
	if got, want := fake.names(), []string{"held", strings.Repeat("é", 32)}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("dlmd received %q, want only %q", got, want)
	}
}
