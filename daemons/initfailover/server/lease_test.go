package server_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/initfailover/election"
	"github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/initfailover/systemdfake"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// freezable is a dlmd stand-in that grants every lock at once and answers
// the rest as dlmd does (a Cancel of an unknown lock: UNKNOWN_LOCK), and
// that can be frozen: it then takes nothing more from any session, new or
// open, and answers nothing, as a dlmd under SIGSTOP.
type freezable struct {
	dlmv1.UnimplementedDlmServer
	mu       sync.Mutex
	thaw     chan struct{} // non-nil while frozen
	sessions int
	delay    time.Duration // before each answer: a slow dlmd
}

func (f *freezable) setDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

func (f *freezable) freeze(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case on && f.thaw == nil:
		f.thaw = make(chan struct{})
	case !on && f.thaw != nil:
		close(f.thaw)
		f.thaw = nil
	}
}

// wait returns once not frozen (false: the stream ended first).
func (f *freezable) wait(ctx context.Context) bool {
	f.mu.Lock()
	ch := f.thaw
	f.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *freezable) Session(st grpc.BidiStreamingServer[dlmv1.ClientMessage, dlmv1.ServerMessage]) error {
	if !f.wait(st.Context()) {
		return nil
	}
	f.mu.Lock()
	f.sessions++
	f.mu.Unlock()
	var sendMu sync.Mutex
	var answers sync.WaitGroup
	defer answers.Wait() // no Send once the handler has returned
	if err := st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Hello{Hello: &dlmv1.SessionHello{Node: 1, Client: 1}}}); err != nil {
		return err
	}
	for id := uint64(1); ; id++ {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if !f.wait(st.Context()) {
			return nil
		}
		f.mu.Lock()
		d := f.delay
		f.mu.Unlock()
		rep := &dlmv1.Reply{Tag: m.GetTag()}
		switch {
		case m.GetLock() != nil:
			rep.LockId = id
			rep.Completion = &dlmv1.Completion{LockId: id, Granted: true, Held: true, Mode: m.GetLock().GetMode(), HasLvb: true}
		case m.GetCancel() != nil:
			rep.Status = dlmv1.Status_STATUS_UNKNOWN_LOCK
		}
		// Answered d later (a slow dlmd: latency, not a queue).
		answers.Add(1)
		go func() {
			defer answers.Done()
			time.Sleep(d)
			sendMu.Lock()
			defer sendMu.Unlock()
			_ = st.Send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: rep}})
		}()
	}
}

// TestFrozenDlmdDropsTheRole: a holder whose dlmd stops answering (frozen:
// its peers fence its locks and grant them elsewhere without telling it)
// stops its services within the bound, so that they are down before the
// new holder may start them, and takes the role again only once dlmd
// answers and grants the lock anew.
func TestFrozenDlmdDropsTheRole(t *testing.T) {
	const (
		target = "openssi-init.target"
		lease  = 500 * time.Millisecond
		stop   = time.Second
	)
	socket := filepath.Join(t.TempDir(), "dlmd.sock")
	ln, _, err := localapi.Listen(socket, "")
	if err != nil {
		t.Fatal(err)
	}
	fake := &freezable{}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	dlmv1.RegisterDlmServer(g, fake)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	defer fake.freeze(false)

	sd := systemdfake.New(1, &systemdfake.Timeline{}, target, webUnit)
	log := logrus.New()
	log.SetOutput(testWriter{t})
	el := server.NewElector(server.ElectorConfig{
		Self: 1, Target: target, Services: []string{webUnit}, StopTimeout: stop, Systemd: sd, DlmLease: lease,
		Retry: 50 * time.Millisecond, Poll: 20 * time.Millisecond, Log: log,
		Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(socket)) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- el.Run(ctx, nil) }()
	defer func() {
		fake.freeze(false)
		cancel()
		<-done
	}()

	waitFor := func(what string, limit time.Duration, ok func() bool) time.Time {
		t.Helper()
		end := time.Now().Add(limit)
		for !ok() {
			if time.Now().After(end) {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Now()
	}
	// Not a clean hand-over: the services start stop after the grant.
	waitFor("the services start", stop+5*time.Second, func() bool { return sd.Active(target) && sd.Active(webUnit) })
	// Alive, even slow (answers taking most of the lease), the dlmd
	// keeps the role here: no flapping.
	fake.setDelay(lease * 6 / 10)
	time.Sleep(5 * lease)
	fake.setDelay(0)
	time.Sleep(lease)
	if !sd.Active(target) {
		t.Fatal("the role was dropped while dlmd answered")
	}

	frozen := time.Now()
	fake.freeze(true)
	// The bound: the last answered probe was sent at most a probe period
	// before the freeze; the lock is lost a lease after it and the
	// services are down at once (the fake stops them at once; a hung one
	// is killed KillAfter(stop) later), well before a new holder granted
	// a lease after the freeze starts them stop later.
	bound := lease + election.KillAfter(stop)
	downAt := waitFor("the services stop", bound+time.Second, func() bool { return !sd.Active(target) && !sd.Active(webUnit) })
	if d := downAt.Sub(frozen); d > bound {
		t.Errorf("the services stopped %v after the freeze, want within %v", d, bound)
	}
	if _, _, init := el.Status(); init {
		t.Error("still holding the role with dlmd frozen")
	}
	// Frozen, dlmd grants nothing: the role is not taken again.
	time.Sleep(2 * stop)
	if sd.Active(target) || sd.Active(webUnit) {
		t.Fatal("the services started again while dlmd was frozen")
	}
	if _, _, init := el.Status(); init {
		t.Error("took the role again with dlmd frozen")
	}

	// Once dlmd answers, the lock is granted on a new session and the
	// services start again, stop after the grant.
	fake.freeze(false)
	waitFor("the services start again", stop+5*time.Second, func() bool { return sd.Active(target) })
	fake.mu.Lock()
	n := fake.sessions
	fake.mu.Unlock()
	if n < 2 {
		t.Errorf("%d sessions: the role came back without a new session", n)
	}
}
