package dlm

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
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
		g.seen = append(g.seen, string(r.GetResource()))
		g.mu.Unlock()
		if err := st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: &dlmv1.Reply{Tag: m.GetTag(), LockId: id,
			Completion: &dlmv1.Completion{LockId: id, Granted: true, Held: true, Mode: r.GetMode()}}}}); err != nil {
			return err
		}
	}
}

// TestBadNamesRefusedBeforeSending: names dlmd would refuse or the
// session cannot carry (an empty or too long resource name, a lockspace
// name that is not UTF-8) fail with ErrInvalid and a one-line message
// that says what is wrong, are never sent, and leave the session and its
// locks as they were. Resource names are bytes: any value, UTF-8 or not,
// control characters included, is sent as it is; errors show a name
// quoted when it is not printable.
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
		{"app", "", `dlm: lock app/: invalid argument: resource name is empty: want 1 to 64 bytes`},
		{"app", strings.Repeat("é", 33), `dlm: lock app/` + strings.Repeat("é", 33) + `: invalid argument: resource name is 66 bytes long: want at most 64`},
		{"app", strings.Repeat("x\n", 100), `dlm: lock app/"` + strings.Repeat(`x\n`, 64) + `"...: invalid argument: resource name is 200 bytes long: want at most 64`},
		{"ap\xffp", "r", `dlm: lock "ap\xffp"/r: invalid argument: lockspace name is not valid UTF-8`},
		{"ap\xffp", "", `dlm: lock "ap\xffp"/: invalid argument: resource name is empty: want 1 to 64 bytes`},
	}
	for _, tt := range tests {
		_, err := c.Lock(ctx, tt.ls, tt.res, EX)
		if !errors.Is(err, ErrInvalid) || err.Error() != tt.want {
			t.Errorf("Lock(%q, %q): %v\nwant %s (ErrInvalid)", tt.ls, tt.res, err, tt.want)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\r\x1b") {
			t.Errorf("Lock(%q, %q): error %q is not one printable line", tt.ls, tt.res, err)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the session ended: %v", err)
	}
	sent := []string{strings.Repeat("é", 32), "bad\xff", "\x00", "a\nb\x1b[2J", string(make([]byte, 64))}
	for _, res := range sent {
		if _, err := c.Lock(ctx, "app", res, EX); err != nil {
			t.Fatalf("lock of %q (%d bytes): %v", res, len(res), err)
		}
	}
	if held.Mode() != EX {
		t.Fatalf("the held lock is %v, want EX", held.Mode())
	}
	if got, want := fake.names(), append([]string{"held"}, sent...); !slices.Equal(got, want) {
		t.Fatalf("dlmd received %q, want only %q", got, want)
	}
}

// TestShowName: errors show a name as it is when it is printable, else
// quoted; a very long one is cut.
func TestShowName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"jobs", "jobs"},
		{"é-ü.x_y", "é-ü.x_y"},
		{"a b", "a b"},
		{"a\nb", `"a\nb"`},
		{"\x00\xff", `"\x00\xff"`},
		{"\x1b[31m", `"\x1b[31m"`},
		{`a"b`, `"a\"b"`},
		{strings.Repeat("a", 200), strings.Repeat("a", 128) + "..."},
	}
	for _, tt := range tests {
		if got := showName(tt.in); got != tt.want {
			t.Errorf("showName(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
