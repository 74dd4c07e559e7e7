package server

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	clmsv1 "github.com/openssi/openssi/proto/clms/v1"
)

func testServer(t testing.TB) *Server {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	s := New(Config{SkewThreshold: 100 * time.Millisecond}, nil, log)
	s.number = 1
	v, _ := membership.Reconcile(membership.View{}, membership.Observed{
		Alive: map[int]membership.Presence{1: {Name: "a"}, 2: {Name: "b"}}, Now: time.Unix(100, 0),
	}, 16)
	s.publish(v)
	s.setHolders(map[int]membership.Claim{1: {Name: "a"}, 2: {Name: "b"}})
	return s
}

// fakeStream is the server side of a Watch stream.
type fakeStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*clmsv1.Event
}

func (f *fakeStream) Context() context.Context { return f.ctx }
func (f *fakeStream) Send(e *clmsv1.Event) error {
	f.sent = append(f.sent, e)
	return nil
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestAPIWatch(t *testing.T) {
	s := testServer(t)
	a := NewAPI(s, nil)
	for from, want := range map[uint64]int{0: 2, 1: 1, 2: 0, 9: 0} {
		st := &fakeStream{ctx: canceled()}
		if err := a.Watch(&clmsv1.WatchRequest{FromEpoch: from}, st); err != nil || len(st.sent) != want {
			t.Fatalf("from %d: %d events, %v", from, len(st.sent), err)
		}
	}
	// Trimmed history is OUT_OF_RANGE.
	var v membership.View
	for i := 0; i < 40; i++ {
		a := map[int]membership.Presence{1: {Name: "a"}}
		if i%2 == 0 {
			a = nil
		}
		v, _ = membership.Reconcile(v, membership.Observed{Alive: a, Now: time.Unix(int64(i), 0)}, 16)
	}
	s.publish(v)
	if err := a.Watch(&clmsv1.WatchRequest{FromEpoch: 3}, &fakeStream{ctx: canceled()}); status.Code(err) != codes.OutOfRange {
		t.Fatalf("trimmed: %v", err)
	}
	// A stopping server ends the stream with UNAVAILABLE so clients reconnect.
	close(s.done)
	st := &fakeStream{ctx: context.Background()}
	if err := a.Watch(&clmsv1.WatchRequest{FromEpoch: v.Epoch}, st); status.Code(err) != codes.Unavailable {
		t.Fatalf("stopping: %v", err)
	}
}

func TestAPIReads(t *testing.T) {
	s := testServer(t)
	s.recordSkew(2, membership.ClockSample{T0: time.Unix(0, 0), T1: time.Unix(0, int64(300*time.Millisecond)), T2: time.Unix(0, int64(300*time.Millisecond)), T3: time.Unix(0, int64(10*time.Millisecond))})
	a := NewAPI(s, nil)
	ctx := context.Background()
	r, err := a.Nodes(ctx, &clmsv1.NodesRequest{})
	if err != nil || r.Epoch != 2 || len(r.Nodes) != 2 || r.ThisNode != 1 {
		t.Fatalf("nodes %v %v", r, err)
	}
	if n := r.Nodes[1]; !n.SkewKnown || !n.SkewWarning || n.SkewNanos != int64(295*time.Millisecond) {
		t.Fatalf("skew of node 2: %+v", n)
	}
	me, err := a.ThisNode(ctx, &clmsv1.ThisNodeRequest{})
	if err != nil || me.Node.Name != "a" || me.Node.State != clmsv1.NodeState_NODE_STATE_UP {
		t.Fatalf("this node %v %v", me, err)
	}
	if _, err := a.Node(ctx, &clmsv1.NodeRequest{Number: 7}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown node: %v", err)
	}
	// Leave needs root proven by SO_PEERCRED: a context without a peer is refused.
	if _, err := a.Leave(ctx, &clmsv1.LeaveRequest{}); status.Code(err) != codes.PermissionDenied && status.Code(err) != codes.Unauthenticated {
		t.Fatalf("leave without credentials: %v", err)
	}
}

// TestAPINamesFromClaims: a member's name is that of its number's claim
// (clms/nodes/<n>, only the holder's token writes it), not the one in the
// shared view (clms/view, any node writes it): a view rewritten to bind
// node 2 to node a's name does not make dlmd believe node a's certificate
// for number 2.
func TestAPINamesFromClaims(t *testing.T) {
	s := testServer(t)
	v, _ := membership.Reconcile(membership.View{}, membership.Observed{
		Alive: map[int]membership.Presence{1: {Name: "a"}, 2: {Name: "a"}, 3: {Name: "c"}}, Now: time.Unix(100, 0),
	}, 16)
	s.publish(v)
	a := NewAPI(s, nil)
	ctx := context.Background()
	want := map[uint32]string{1: "a", 2: "b", 3: ""} // 3: no claim known
	r, err := a.Nodes(ctx, &clmsv1.NodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range r.Nodes {
		if n.Name != want[n.Number] {
			t.Errorf("Nodes: node %d named %q, want %q", n.Number, n.Name, want[n.Number])
		}
		one, err := a.Node(ctx, &clmsv1.NodeRequest{Number: n.Number})
		if err != nil || one.Node.Name != want[n.Number] {
			t.Errorf("Node(%d): %v %v, want name %q", n.Number, one, err, want[n.Number])
		}
	}
	st := &fakeStream{ctx: canceled()}
	if err := a.Watch(&clmsv1.WatchRequest{}, st); err != nil || len(st.sent) != 3 {
		t.Fatalf("watch: %d events, %v", len(st.sent), err)
	}
	for _, e := range st.sent {
		if e.Node.Name != want[e.Node.Number] {
			t.Errorf("Watch: node %d named %q, want %q", e.Node.Number, e.Node.Name, want[e.Node.Number])
		}
	}
}

// FuzzAPIRequests decodes arbitrary bytes as each local-API request (what a
// local client can send) and runs the handler: no panic, and errors are
// gRPC statuses.
func FuzzAPIRequests(f *testing.F) {
	b, _ := proto.Marshal(&clmsv1.NodeRequest{Number: 2})
	f.Add(uint8(0), b)
	b, _ = proto.Marshal(&clmsv1.WatchRequest{FromEpoch: 1})
	f.Add(uint8(1), b)
	f.Add(uint8(2), []byte{0xff, 0x01})
	s := testServer(f)
	a := NewAPI(s, nil)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		ctx := context.Background()
		switch which % 3 {
		case 0:
			var r clmsv1.NodeRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			if _, err := a.Node(ctx, &r); err != nil {
				if _, ok := status.FromError(err); !ok {
					t.Fatalf("non-status error %v", err)
				}
			}
		case 1:
			var r clmsv1.WatchRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			st := &fakeStream{ctx: canceled()}
			err := a.Watch(&r, st)
			if err != nil && status.Code(err) != codes.OutOfRange {
				t.Fatalf("watch from %d: %v", r.FromEpoch, err)
			}
			for i, e := range st.sent {
				if e.Epoch != r.FromEpoch+uint64(i)+1 {
					t.Fatalf("watch from %d sent epoch %d at %d", r.FromEpoch, e.Epoch, i)
				}
			}
		default:
			var r clmsv1.NodesRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			if _, err := a.Nodes(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
	})
}
