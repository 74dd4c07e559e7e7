package node

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// FuzzPeerMessage feeds decoded peer messages (requests, effects, markers,
// copies, exits, lookups and their replies, removes) from node 2 through
// the handlers of a node-1 master, as a peer's channel would: nothing may
// panic and the tables must stay sound. Node 1 masters "a" and "b" of
// lockspace "ls" and has lookup 1 out to node 2 for "c".
func FuzzPeerMessage(f *testing.F) {
	seeds := []*dlmpeerv1.PeerMessage{
		{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{Tag: 1, Epoch: 1, Op: dlmpeerv1.Op_OP_LOCK, Lockspace: "ls", Resource: []byte("a"), Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_EX}}},
		{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{Tag: 2, Epoch: 1, Op: dlmpeerv1.Op_OP_CONVERT, Lockspace: "ls", Resource: []byte("a"), Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_NL, Flags: 2, Lvb: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 1, Round: 1, Node: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{Epoch: 1, Lockspace: "ls", Locks: []*dlmpeerv1.CopyLock{{Resource: []byte("b"), State: 1, Granted: 6}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Effect{Effect: &dlmpeerv1.PeerEffect{Lockspace: "ls", Kind: 1, LockId: 1}}, Seq: 1, Ack: 3},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 1, Round: 2, Node: 2, PongAges: []*dlmpeerv1.PongAge{{Node: 3, AgeNanos: 5}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Ping{Ping: &dlmpeerv1.Ping{SentNanos: 7}}},
		{Msg: &dlmpeerv1.PeerMessage_Lookup{Lookup: &dlmpeerv1.Lookup{Tag: 3, Epoch: 1, Lockspace: "ls", Resource: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Master: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Master: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Status: dlmv1.Status_STATUS_INVALID}}},
		{Msg: &dlmpeerv1.PeerMessage_Remove{Remove: &dlmpeerv1.Remove{Epoch: 1, Lockspace: "ls", Resource: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{Epoch: 1, Lockspace: "ls", Dir: []*dlmpeerv1.DirEntry{{Resource: []byte("d"), Master: 2}}}}},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m dlmpeerv1.PeerMessage
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		now := time.Unix(1000, 0)
		n := New(Config{Node: 1, Incarnation: 1})
		n.members = directory.Members{Epoch: 1, Up: map[uint32]bool{1: true, 2: true}}
		n.dir = []uint32{1, 2}
		n.last = directory.Completed{ID: directory.ID{Epoch: 1}, Members: map[uint32]uint64{1: 1, 2: 1}}
		n.haveLast = true
		for _, r := range []string{"a", "b"} {
			n.mastered[directory.Key{Lockspace: "ls", Resource: r}] = &mastery{used: now}
		}
		cl := &copyLock{ls: "ls", res: "c", key: lockspace.Key{Owner: lockspace.Owner{Node: 1, Client: 9}, ID: 9}, orphan: true}
		n.addLock(cl)
		l := &lookup{key: directory.Key{Lockspace: "ls", Resource: "c"}, tag: 1, dir: 2, sent: true, waiting: []*pending{{tag: 5, lock: cl,
			req: &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_LOCK, Lockspace: "ls", Resource: []byte("c"), Client: 9, LockId: 9, Mode: dlmv1.Mode_MODE_PR}}}}
		n.lookups[l.key], n.lookupTags[l.tag] = l, l
		if ok, _ := n.Attach(now, 2, 1, 1, FeatEffectInReply); !ok {
			t.Fatal("link from node 2 refused")
		}
		n.toMaster(2, &dlmpeerv1.PeerMessage{})
		n.Ready()
		out := Link{Node: 2, Out: true, Inc: 1, ID: n.outs[2].id}
		n.Step(now, Link{Node: 2, Inc: 1, ID: 1}, &m)
		n.Step(now, out, &m)
		if err := n.Check(); err != nil {
			t.Fatal(err)
		}
	})
}
