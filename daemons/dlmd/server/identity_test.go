package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// These tests play a peer that holds a certificate and speaks for a node
// against a real dlmd (node 1 of a one-node test cluster, where node
// number n is held by Consul node "node<n>"): a peer is believed to be
// node n only with the certificate of n's holder.

// channel opens a peer channel to addr with src and sends a hello naming
// node hello; ctx bounds it all.
func channel(ctx context.Context, t *testing.T, src rpc.Source, addr string, hello uint32) (grpc.BidiStreamingClient[dlmpeerv1.PeerMessage, dlmpeerv1.PeerMessage], error) {
	t.Helper()
	conn, err := rpc.Dial(ctx, src, addr, ServiceName)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	st, err := dlmpeerv1.NewPeerClient(conn).Channel(ctx)
	if err != nil {
		return nil, err
	}
	err = st.Send(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Hello{Hello: &dlmpeerv1.PeerHello{
		Node: hello, Incarnation: 1, Link: 1, Features: 1}}})
	return st, err
}

// firstReply returns the first message the stream brings (the master's
// hello when the channel is accepted).
func firstReply(st grpc.BidiStreamingClient[dlmpeerv1.PeerMessage, dlmpeerv1.PeerMessage]) (*dlmpeerv1.PeerMessage, error) {
	return st.Recv()
}

// TestImpersonationRefused: a peer holding node 3's certificate that says
// it is node 2 in its hello is refused, with one clear log line naming
// both; with the same certificate it is believed as node 3.
func TestImpersonationRefused(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	addr := c.nodes[1].addr
	node3 := source(t, c.ca, c.dir, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for range 2 {
		st, err := channel(ctx, t, node3, addr, 2)
		if err == nil {
			var m *dlmpeerv1.PeerMessage
			m, err = firstReply(st)
			if err == nil {
				t.Fatalf("node 3's certificate claiming node 2: answered %v, want the channel refused", m)
			}
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("node 3's certificate claiming node 2: %v, want PermissionDenied", err)
		}
		if !strings.Contains(err.Error(), "claims to be node 2") || !strings.Contains(err.Error(), `"node3"`) {
			t.Errorf("refusal %q does not name the claimed node and the certificate's", err)
		}
	}
	logs := c.logs.String()
	if n := strings.Count(logs, "refused a peer dlmd: it claims to be node 2"); n != 1 {
		t.Errorf("the refusal is logged %d times at error level, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "level=error") || !strings.Contains(logs, "certificate_node=node3") {
		t.Errorf("the refusal is not logged as an error naming the certificate's node:\n%s", logs)
	}

	// The same certificate speaking for its own node is believed.
	st, err := channel(ctx, t, node3, addr, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := firstReply(st)
	if err != nil || m.GetHello().GetNode() != 1 {
		t.Fatalf("node 3 as itself: %v, %v; want node 1's hello", m, err)
	}
}

// bareSource presents a certificate and checks nothing of the server: a
// peer holding what any local user could get from an agent without ACLs
// before identities named the node, the leaf of the bare service.
type bareSource struct{ cert tls.Certificate }

func (b *bareSource) ServerConfig() *tls.Config { return nil }
func (b *bareSource) ClientConfig(string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{b.cert}, InsecureSkipVerify: true}
}
func (b *bareSource) Close() error { return nil }

// TestBareServiceCertificateRefused: a certificate naming the service
// openssi-dlmd and no node is refused, whatever node its hello claims.
func TestBareServiceCertificateRefused(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	certPEM, keyPEM := c.ca.Issue(t, rpctest.SPIFFE(ServiceName))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, hello := range []uint32{1, 2, 3} {
		st, err := channel(ctx, t, &bareSource{cert: cert}, c.nodes[1].addr, hello)
		if err == nil {
			var m *dlmpeerv1.PeerMessage
			if m, err = firstReply(st); err == nil {
				t.Fatalf("a bare openssi-dlmd certificate claiming node %d: answered %v, want refused", hello, m)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("claiming node %d: %v; the dlmd neither answered nor refused", hello, err)
		}
		t.Logf("claiming node %d: refused: %v", hello, err)
	}
}

// TestWrongSenderRefused: on node 3's authenticated link, a message
// naming node 2 as its sender (a recovery marker of node 2) is refused and
// the stream closed, the message not delivered.
func TestWrongSenderRefused(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	node3 := source(t, c.ca, c.dir, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := channel(ctx, t, node3, c.nodes[1].addr, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := firstReply(st); err != nil || m.GetHello() == nil {
		t.Fatalf("node 3 as itself: %v, %v; want a hello", m, err)
	}
	if err := st.Send(&dlmpeerv1.PeerMessage{Seq: 1, Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{
		Epoch: 1, Round: 9, Node: 2, Incarnation: 1}}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := st.Recv()
		if err == nil {
			if m.GetAck() >= 1 {
				t.Fatalf("the marker naming node 2 was acknowledged (%v)", m)
			}
			continue // a pong, or an acknowledgement of nothing
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a marker naming node 2 on node 3's link: stream ended with %v, want PermissionDenied", err)
		}
		if !strings.Contains(err.Error(), "node 3's link brought a recovery marker naming node 2") {
			t.Errorf("refusal %q does not say what was refused", err)
		}
		break
	}
	if logs := c.logs.String(); strings.Count(logs, "refused a peer message") != 1 {
		t.Errorf("the refusal is not logged once:\n%s", logs)
	}
}

// fakePeer is a dlmd peer server that only counts the channels opened to
// it.
type fakePeer struct {
	dlmpeerv1.UnimplementedPeerServer
	channels atomic.Int32
}

func (f *fakePeer) Channel(st grpc.BidiStreamingServer[dlmpeerv1.PeerMessage, dlmpeerv1.PeerMessage]) error {
	f.channels.Add(1)
	<-st.Context().Done()
	return nil
}

// TestDialsOnlyTheHolder: node 1's dlmd, reaching node 2 (at an address
// where a dlmd holding node 3's certificate answers), refuses the server:
// only the holder of node 2 may answer for it.
func TestDialsOnlyTheHolder(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakePeer{}
	g := rpc.NewServer(source(t, c.ca, c.dir, 3))
	dlmpeerv1.RegisterPeerServer(g, fake)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	c.mu.Lock()
	c.nodes[2] = &testNode{num: 2, addr: ln.Addr().String()}
	c.mu.Unlock()
	c.net.mu.Lock()
	c.net.addrs[ln.Addr().String()] = 2
	c.net.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.nodes[1].srv.conn(ctx, 2)
	if !errors.Is(err, rpc.ErrPeerIdentity) {
		t.Fatalf("dialling node 2 where node 3's dlmd answers: %v, want ErrPeerIdentity", err)
	}
	if n := fake.channels.Load(); n != 0 {
		t.Fatalf("%d channels reached the impostor", n)
	}
}

// TestVictimsOnlyFromTheCoordinator: the deadlock victims, which fail
// requests of any node, are taken only from the coordinator (the lowest
// member, here node 1 itself): node 3's dlmd sending them is refused.
func TestVictimsOnlyFromTheCoordinator(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := rpc.Dial(ctx, source(t, c.ca, c.dir, 3), c.nodes[1].addr, ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = dlmpeerv1.NewPeerClient(conn).Victims(ctx, &dlmpeerv1.VictimsRequest{Victims: []*dlmpeerv1.Edge{{
		Lockspace: "ls", Waiter: &dlmpeerv1.Waiter{Resource: []byte("r"), Node: 1, Client: 1, LockId: 1}}}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("victims from node 3: %v, want PermissionDenied", err)
	}
}
