package server

import (
	"bytes"
	"context"
	"errors"
	"strings"
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
// request whose lockspace name is not UTF-8 (what gRPC's codec refuses to
// decode: resource names are bytes, lockspace names strings), then one
// whose resource name is too long (what the client library refuses to
// send). dlmd answers each, by its tag, with STATUS_INVALID and keeps the
// session: its lock is still held and it can still lock.
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
	lock := func(tag uint64, ls, res string) []byte {
		b, err := proto.Marshal(&dlmv1.ClientMessage{Tag: tag, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
			Lockspace: ls, Resource: []byte(res), Mode: dlmv1.Mode(dlm.EX), CompletionInReply: true}}})
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
	if r := reply(lock(1, "bad", "held")); r.GetStatus() != dlmv1.Status_STATUS_OK || r.GetCompletion().GetStatus() != dlmv1.Status_STATUS_OK {
		t.Fatalf("lock held: %v", r)
	}
	bad := bytes.Replace(lock(2, "badXX", "r"), []byte("XX"), []byte{0xff, 0xfe}, 1)
	if r := reply(bad); r.GetTag() != 2 || r.GetStatus() != dlmv1.Status_STATUS_INVALID {
		t.Fatalf("reply to a lockspace name that is not UTF-8: %v, want tag 2 STATUS_INVALID", r)
	}
	if r := reply(lock(4, "bad", strings.Repeat("\xff", 65))); r.GetTag() != 4 || r.GetStatus() != dlmv1.Status_STATUS_INVALID ||
		r.GetMessage() != "resource name of 65 bytes: want 1 to 64" {
		t.Fatalf("reply to a resource name of 65 bytes: %v, want tag 4 STATUS_INVALID", r)
	}
	if _, err := c.client(ctx, 2).Lock(ctx, "bad", "held", dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
		t.Fatalf("EX NoQueue on held from node 2: %v, want ErrWouldBlock (the session's lock)", err)
	}
	if r := reply(lock(3, "bad", "next\xff")); r.GetTag() != 3 || r.GetStatus() != dlmv1.Status_STATUS_OK {
		t.Fatalf("lock after the bad request: %v", r)
	}
}

// FuzzTagOf: tagOf never panics and, for a message that decodes, finds
// the tag the decoder does.
func FuzzTagOf(f *testing.F) {
	for _, m := range []*dlmv1.ClientMessage{
		{Tag: 7, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{Lockspace: "ls", Resource: []byte("r")}}},
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

// TestByteResourceNames: resource names are bytes. Names with a NUL, bytes
// that are not UTF-8 and a newline are locked from node 1 and contended
// from node 2 (through the peer protocol: a lookup, a request to the
// master), listed with their exact bytes from either node, and each is its
// own resource: a name one byte apart does not conflict. Before, a name
// that is not UTF-8 was refused by the client and could not cross the
// wire.
func TestByteResourceNames(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "bytes"
	names := []string{"nul\x00x", "\xff\xfe", "line\nbreak", "\x00", "é\xc3", "tab\tand\x1b[2J"}
	c1, c2 := c.client(ctx, 1), c.client(ctx, 2)
	held := map[string]*dlm.Lock{}
	for _, name := range names {
		l, err := c1.Lock(ctx, ls, name, dlm.EX)
		if err != nil {
			t.Fatalf("lock %q from node 1: %v", name, err)
		}
		held[name] = l
		if _, err := c2.Lock(ctx, ls, name, dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
			t.Fatalf("EX NoQueue on %q from node 2: %v, want ErrWouldBlock", name, err)
		}
		// One byte apart: another resource.
		near := name[:len(name)-1] + string(name[len(name)-1]^1)
		nl, err := c2.Lock(ctx, ls, near, dlm.EX, dlm.NoQueue())
		if err != nil {
			t.Fatalf("EX NoQueue on %q from node 2 while %q is held: %v", near, name, err)
		}
		if err := nl.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range []*dlm.Client{c1, c2} {
		l, err := cl.Locks(ctx, dlm.InLockspace(ls))
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, r := range l.Resources {
			if len(r.Locks) > 0 && r.Locks[0].State == dlm.Granted {
				listed[r.Name] = true
			}
		}
		for _, name := range names {
			if !listed[name] {
				t.Errorf("node %d's listing lacks %q: %+v", cl.Node(), name, l.Resources)
			}
		}
	}
	for _, name := range names {
		if err := held[name].Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := c2.Lock(ctx, ls, name, dlm.EX)
		if err != nil {
			t.Fatalf("lock %q from node 2 after node 1's unlock: %v", name, err)
		}
		if l.Resource() != name {
			t.Fatalf("lock of %q reports resource %q", name, l.Resource())
		}
	}
}
