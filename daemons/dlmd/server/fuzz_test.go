package server

import (
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
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
		{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{Tag: 1, Epoch: 1, Op: dlmpeerv1.Op_OP_LOCK, Lockspace: "ls", Resource: "a", Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_EX}}},
		{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{Tag: 2, Epoch: 1, Op: dlmpeerv1.Op_OP_CONVERT, Lockspace: "ls", Resource: "a", Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_NL, Flags: 2, Lvb: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 1, Round: 1, Node: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{Epoch: 1, Lockspace: "ls", Locks: []*dlmpeerv1.CopyLock{{Resource: "b", State: 1, Granted: 6}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Effect{Effect: &dlmpeerv1.PeerEffect{Lockspace: "ls", Kind: 1, LockId: 1}}, Seq: 1, Ack: 3},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 1, Round: 2, Node: 2, PongAges: []*dlmpeerv1.PongAge{{Node: 3, AgeNanos: 5}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Ping{Ping: &dlmpeerv1.Ping{SentNanos: 7}}},
		{Msg: &dlmpeerv1.PeerMessage_Lookup{Lookup: &dlmpeerv1.Lookup{Tag: 3, Epoch: 1, Lockspace: "ls", Resource: "x"}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Master: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Master: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Status: dlmv1.Status_STATUS_INVALID}}},
		{Msg: &dlmpeerv1.PeerMessage_Remove{Remove: &dlmpeerv1.Remove{Epoch: 1, Lockspace: "ls", Resource: "x"}}},
		{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{Epoch: 1, Lockspace: "ls", Dir: []*dlmpeerv1.DirEntry{{Resource: "d", Master: 2}}}}},
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
		log := logrus.New()
		log.SetOutput(io.Discard)
		s := New(Config{Node: 1, Incarnation: 1, Log: log})
		close(s.stop) // no loop: handlers run here, and nothing may block on it
		s.members = directory.Members{Epoch: 1, Up: map[uint32]bool{1: true, 2: true}}
		s.dir = []uint32{1, 2}
		s.last = directory.Completed{ID: directory.ID{Epoch: 1}, Members: map[uint32]uint64{1: 1, 2: 1}}
		s.haveLast = true
		for _, r := range []string{"a", "b"} {
			s.mastered[directory.Key{Lockspace: "ls", Resource: r}] = &mastery{used: time.Now()}
		}
		cl := &copyLock{ls: "ls", res: "c", key: lockspace.Key{Owner: lockspace.Owner{Node: 1, Client: 9}, ID: 9}}
		s.locks[cl.key.ID] = cl
		l := &lookup{key: directory.Key{Lockspace: "ls", Resource: "c"}, tag: 1, dir: 2, sent: true, waiting: []*pending{{tag: 5, lock: cl,
			req: &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_LOCK, Lockspace: "ls", Resource: "c", Client: 9, LockId: 9, Mode: dlmv1.Mode_MODE_PR}}}}
		s.lookups[l.key], s.lookupTags[l.tag] = l, l
		in := &inStream{node: 2, inc: 1, log: newLink()}
		s.peersIn[2] = in
		s.peersOut[2] = &peerOut{node: 2, log: newLink()}
		// A fresh link delivers an unnumbered message or the first one.
		if m.GetSeq() <= 1 {
			s.onFromRequester(in, &m)
			s.onFromMaster(2, &m)
		}
		for name, tb := range s.tables {
			if err := tb.Check(); err != nil {
				t.Fatalf("lockspace %s: %v", name, err)
			}
		}
	})
}
