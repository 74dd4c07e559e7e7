package server

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// rawCodec sends []byte as the frame it is, so that a test can send what
// a client library would refuse to encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }

func (rawCodec) Name() string { return "proto" }

// TestBadRequestKeepsTheSession: a session that holds a lock sends a lock
// request whose resource name is not UTF-8 (what gRPC's codec refuses to
// decode). dlmd answers that request, by its tag, with STATUS_INVALID and
// keeps the session: its lock is still held and it can still lock.
func TestBadRequestKeepsTheSession(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := localapi.Dial(ctx, c.nodes[1].socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := dlmv1.NewDlmClient(conn).Session(ctx, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.GetHello() == nil {
		t.Fatalf("hello: %v, %v", m, err)
	}
	lock := func(tag uint64, res string) []byte {
		b, err := proto.Marshal(&dlmv1.ClientMessage{Tag: tag, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
			Lockspace: "bad", Resource: res, Mode: dlmv1.Mode(dlm.EX), CompletionInReply: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reply := func(b []byte) *dlmv1.Reply {
		t.Helper()
		if err := st.SendMsg(b); err != nil {
			t.Fatalf("send: %v", err)
		}
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("the session ended: %v", err)
		}
		if m.GetReply() == nil {
			t.Fatalf("got %v, want a reply", m)
		}
		return m.GetReply()
	}
	if r := reply(lock(1, "held")); r.GetStatus() != dlmv1.Status_STATUS_OK || r.GetCompletion().GetStatus() != dlmv1.Status_STATUS_OK {
		t.Fatalf("lock held: %v", r)
	}
	bad := bytes.Replace(lock(2, "name-XX"), []byte("XX"), []byte{0xff, 0xfe}, 1)
	if r := reply(bad); r.GetTag() != 2 || r.GetStatus() != dlmv1.Status_STATUS_INVALID {
		t.Fatalf("reply to a name that is not UTF-8: %v, want tag 2 STATUS_INVALID", r)
	}
	if _, err := c.client(ctx, 2).Lock(ctx, "bad", "held", dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
		t.Fatalf("EX NoQueue on held from node 2: %v, want ErrWouldBlock (the session's lock)", err)
	}
	if r := reply(lock(3, "next")); r.GetTag() != 3 || r.GetStatus() != dlmv1.Status_STATUS_OK {
		t.Fatalf("lock after the bad request: %v", r)
	}
}

// FuzzTagOf: tagOf never panics and, for a message that decodes, finds
// the tag the decoder does.
func FuzzTagOf(f *testing.F) {
	for _, m := range []*dlmv1.ClientMessage{
		{Tag: 7, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{Lockspace: "ls", Resource: "r"}}},
		{Tag: 1 << 40, Op: &dlmv1.ClientMessage_Unlock{Unlock: &dlmv1.UnlockRequest{LockId: 3}}},
		{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tag := tagOf(b)
		var m dlmv1.ClientMessage
		if proto.Unmarshal(b, &m) == nil && m.GetTag() != tag {
			t.Fatalf("tagOf = %d, the decoder's tag %d", tag, m.GetTag())
		}
	})
}
