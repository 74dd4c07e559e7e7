package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// localFixture is the dlmd of a one-node cluster, with no loop: the test
// runs what the handlers queue (drain). Session 1 (uid 1000) holds EX on
// "mine" and session 2 (uid 1000) waits for it in PR, so that what
// session 1 does can grant it. (The protocol with peers is fuzzed in
// package node.)
type localFixture struct {
	s        *Server
	a        *API
	ss, ss2  *session
	lockMine uint64 // session 1's lock on "mine"
}

func newLocalFixture(t testing.TB) *localFixture {
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := New(Config{Node: 1, Incarnation: 1, Log: log, Lockspaces: newMemStore(),
		Lookup: func(n uint32) (string, error) { return "", errors.New("no peers in this test") }})
	fx := &localFixture{s: s, a: NewAPI(s)}
	s.core.Start(time.Now(), 1, []uint32{1})
	s.flush()
	cred := lockspace.Cred{UID: 1000, GID: 1000}
	for i, ss := range []**session{&fx.ss, &fx.ss2} {
		*ss = &session{pid: int32(101 + i), cred: cred, q: newQueue[*dlmv1.ServerMessage]()}
		(*ss).id = s.core.OpenSession(time.Now(), (*ss).pid, cred)
		s.sessions[(*ss).id] = *ss
	}
	ctx := context.Background()
	fx.feed(t, ctx, fx.ss, &dlmv1.ClientMessage{Tag: 1, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
		Lockspace: "ls", Resource: []byte("mine"), Mode: dlmv1.Mode_MODE_EX, Flags: uint32(lockspace.ValBlk)}}})
	fx.feed(t, ctx, fx.ss2, &dlmv1.ClientMessage{Tag: 1, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
		Lockspace: "ls", Resource: []byte("mine"), Mode: dlmv1.Mode_MODE_PR}}})
	items, _ := fx.ss.q.take(nil)
	for _, m := range items {
		if c := m.GetCompletion(); c != nil && c.GetGranted() {
			fx.lockMine = c.GetLockId()
		}
	}
	if fx.lockMine == 0 {
		t.Fatalf("fixture: session 1's lock on mine is not granted: %v", items)
	}
	fx.check(t)
	return fx
}

// serve runs the loop while call waits for it (a unary handler).
func (fx *localFixture) serve(call func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case f := <-fx.s.ops:
				runOp(fx.s, f)
			case <-done:
				return
			}
		}
	}()
	call()
	close(done)
	wg.Wait()
}

// drain runs what the handlers queued for the loop.
func (fx *localFixture) drain() {
	for {
		select {
		case f := <-fx.s.ops:
			runOp(fx.s, f)
		default:
			return
		}
	}
}

// feed hands one client message to the local API as Session does and runs
// its effects; a decode error is answered to the session, as Session does.
func (fx *localFixture) feed(t testing.TB, ctx context.Context, ss *session, m *dlmv1.ClientMessage) {
	t.Helper()
	if err := fx.a.handle(ctx, ss, m); err != nil {
		ss.send(replyErr(m.GetTag(), err))
	}
	fx.drain()
}

// exit ends a session as Session does when its stream ends.
func (fx *localFixture) exit(ss *session) {
	runOp(fx.s, func() { fx.s.core.CloseSession(time.Now(), ss.id) })
}

func (fx *localFixture) check(t testing.TB) {
	t.Helper()
	if err := fx.s.core.Check(); err != nil {
		t.Fatal(err)
	}
}

// FuzzLocalRequest decodes arbitrary bytes as each request of the local
// API (a whole ClientMessage, and each of LockRequest, ConvertRequest,
// UnlockRequest, CancelRequest in a message of its own, with the fuzzed
// lock id also pointed at session 1's granted lock) and hands them to the
// real handlers of a node-1 dlmd, then ends the session: nothing may panic
// and the lock tables must stay sound. LocksRequest goes through Locks,
// PurgeRequest through Purge once the session ended.
func FuzzLocalRequest(f *testing.F) {
	seeds := []proto.Message{
		&dlmv1.ClientMessage{Tag: 7, Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{Lockspace: "ls", Resource: []byte("x"), Mode: dlmv1.Mode_MODE_PW, Flags: 1, TimeoutNanos: 1}}},
		&dlmv1.ClientMessage{Tag: 8, Op: &dlmv1.ClientMessage_Convert{Convert: &dlmv1.ConvertRequest{LockId: 1, Mode: dlmv1.Mode_MODE_NL, Flags: 2, Lvb: []byte("value")}}},
		&dlmv1.ClientMessage{Tag: 9, Op: &dlmv1.ClientMessage_Unlock{Unlock: &dlmv1.UnlockRequest{LockId: 1, Flags: 2, Lvb: make([]byte, 40)}}},
		&dlmv1.ClientMessage{Tag: 10, Op: &dlmv1.ClientMessage_Cancel{Cancel: &dlmv1.CancelRequest{LockId: 2}}},
		&dlmv1.ClientMessage{Tag: 11},
		&dlmv1.LockRequest{Lockspace: "openssi.sys", Resource: []byte("y"), Mode: dlmv1.Mode_MODE_EX},
		&dlmv1.LockRequest{Lockspace: "ls", Resource: []byte("r1"), Mode: dlmv1.Mode_MODE_CR, Flags: 0xffffffff, TimeoutNanos: -1},
		&dlmv1.ConvertRequest{LockId: 1, Mode: dlmv1.Mode_MODE_EX, Flags: 4},
		&dlmv1.UnlockRequest{LockId: 3},
		&dlmv1.CancelRequest{LockId: 3},
		&dlmv1.LocksRequest{Lockspace: "ls"},
		&dlmv1.PurgeRequest{Lockspace: "ls", Pid: 101},
		&dlmv1.LockRequest{Lockspace: "ls", Resource: []byte("p"), Mode: dlmv1.Mode_MODE_EX, Flags: 8},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := newLocalFixture(t)
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: localapi.AuthInfo{Cred: localapi.Cred{PID: 101, UID: 1000, GID: 1000}}})
		var msgs []*dlmv1.ClientMessage
		var cm dlmv1.ClientMessage
		if proto.Unmarshal(data, &cm) == nil {
			msgs = append(msgs, &cm)
		}
		var lr dlmv1.LockRequest
		if proto.Unmarshal(data, &lr) == nil {
			msgs = append(msgs, &dlmv1.ClientMessage{Tag: 100, Op: &dlmv1.ClientMessage_Lock{Lock: &lr}})
		}
		for _, id := range []uint64{0, fx.lockMine} {
			var cr dlmv1.ConvertRequest
			if proto.Unmarshal(data, &cr) == nil {
				if id != 0 {
					cr.LockId = id
				}
				msgs = append(msgs, &dlmv1.ClientMessage{Tag: 101, Op: &dlmv1.ClientMessage_Convert{Convert: &cr}})
			}
		}
		var ur dlmv1.UnlockRequest
		if proto.Unmarshal(data, &ur) == nil {
			msgs = append(msgs, &dlmv1.ClientMessage{Tag: 102, Op: &dlmv1.ClientMessage_Unlock{Unlock: &ur}})
		}
		var xr dlmv1.CancelRequest
		if proto.Unmarshal(data, &xr) == nil {
			msgs = append(msgs, &dlmv1.ClientMessage{Tag: 103, Op: &dlmv1.ClientMessage_Cancel{Cancel: &xr}})
		}
		for _, m := range msgs {
			fx.feed(t, ctx, fx.ss, m)
			fx.check(t)
		}
		// The unlock of the fuzzed value block and flags, on the held lock.
		if proto.Unmarshal(data, &ur) == nil {
			ur.LockId = fx.lockMine
			fx.feed(t, ctx, fx.ss, &dlmv1.ClientMessage{Tag: 104, Op: &dlmv1.ClientMessage_Unlock{Unlock: &ur}})
			fx.check(t)
		}
		var lq dlmv1.LocksRequest
		if proto.Unmarshal(data, &lq) == nil {
			fx.serve(func() { _, _ = fx.a.Locks(ctx, &lq) })
			fx.check(t)
		}
		// The client goes away: its locks go (persistent ones stay as
		// orphans, which a purge may release), the others' must be sound.
		fx.exit(fx.ss)
		fx.drain()
		fx.check(t)
		var pq dlmv1.PurgeRequest
		if proto.Unmarshal(data, &pq) == nil {
			fx.serve(func() { _, _ = fx.a.Purge(ctx, &pq) })
			fx.drain()
			fx.check(t)
		}
		fx.exit(fx.ss2)
		fx.drain()
		fx.check(t)
	})
}

// runOp runs an operation as the loop would, then carries out what it
// asked of the core.
func runOp(s *Server, f func()) {
	f()
	s.flush()
}
