package election

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const stopTimeout = 8 * time.Second

// step is one input of a scripted test, at an offset from t0, with the
// actions and state it must produce.
type step struct {
	at    time.Duration
	in    string // boot, stopped, grant, grant-clean, grant-move:N/BY/SEQ, grant-foreign, lost, tick, move:N, shutdown, down:N
	want  string // the actions, space-separated ("" none)
	state State
	err   error
}

func run(t *testing.T, name string, steps []step) {
	t.Helper()
	c := New(Config{Self: 1, StopTimeout: stopTimeout})
	for _, n := range []uint32{1, 2, 3} {
		c.SetUp(n, true)
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		var err error
		switch in := s.in; {
		case in == "boot":
			c.Start(now)
		case in == "stopped":
			c.UnitsStopped(now)
		case in == "grant":
			c.Granted(now, [RecordLen]byte{}, false)
		case in == "grant-clean":
			c.Granted(now, Record{Clean: true, Holder: 2}.Encode(), true)
		case in == "grant-dirty":
			c.Granted(now, Record{Holder: 2}.Encode(), true)
		case in == "grant-foreign":
			c.Granted(now, [RecordLen]byte{'x'}, true)
		case strings.HasPrefix(in, "grant-move:"):
			var next, by, seq uint32
			fmt.Sscanf(in, "grant-move:%d/%d/%d", &next, &by, &seq)
			c.Granted(now, Record{Clean: true, Holder: by, Next: next, MoveBy: by, Move: seq}.Encode(), true)
		case in == "lost":
			c.Lost(now)
		case in == "tick":
			c.Tick(now)
		case strings.HasPrefix(in, "move:"):
			var n uint32
			fmt.Sscanf(in, "move:%d", &n)
			err = c.Move(now, n)
		case strings.HasPrefix(in, "down:"):
			var n uint32
			fmt.Sscanf(in, "down:%d", &n)
			c.SetUp(n, false)
		case in == "shutdown":
			c.Shutdown(now)
		default:
			t.Fatalf("%s: step %d: unknown input %q", name, i, in)
		}
		var got []string
		for _, a := range c.Ready() {
			got = append(got, a.String())
		}
		if g := strings.Join(got, ", "); g != s.want {
			t.Errorf("%s: step %d (%s at %v): actions %q, want %q", name, i, s.in, s.at, g, s.want)
		}
		if st, _ := c.State(); st != s.state {
			t.Errorf("%s: step %d (%s): state %v, want %v", name, i, s.in, st, s.state)
		}
		if !errors.Is(err, s.err) {
			t.Errorf("%s: step %d (%s): error %v, want %v", name, i, s.in, err, s.err)
		}
	}
}

func TestElection(t *testing.T) {
	kill := KillAfter(stopTimeout) // 6s
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"boot stops what runs here before queueing", []step{
			{0, "boot", "stop", Booting, nil},
			{time.Second, "stopped", "request-lock", Waiting, nil},
		}},
		{"boot kills what a crashed process left running at 3/4 of the timeout", []step{
			{0, "boot", "stop", Booting, nil},
			{kill - 1, "tick", "", Booting, nil},
			{kill, "tick", "kill", Booting, nil},
			{kill + 1, "tick", "", Booting, nil},
			{kill + time.Second, "stopped", "request-lock", Waiting, nil},
			{2 * stopTimeout, "tick", "", Waiting, nil},
		}},
		{"shutdown while booting: done once stopped, never queues", []step{
			{0, "boot", "stop", Booting, nil},
			{time.Second, "shutdown", "", Booting, nil},
			{kill, "tick", "kill", Booting, nil},
			{kill + time.Second, "stopped", "", Done, nil},
		}},
		{"a grant after a crash waits the stop timeout", []step{
			{0, "boot", "stop", Booting, nil},
			{0, "stopped", "request-lock", Waiting, nil},
			{time.Second, "grant", "", Holding, nil},
			{time.Second + stopTimeout - 1, "tick", "", Holding, nil},
			{time.Second + stopTimeout, "tick", "start", Running, nil},
		}},
		{"a valid record that is not clean waits too", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-dirty", "", Holding, nil},
			{stopTimeout, "tick", "start", Running, nil},
		}},
		{"a foreign value block is not a clean hand-over", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-foreign", "", Holding, nil},
			{stopTimeout, "tick", "start", Running, nil},
		}},
		{"a clean hand-over starts at once", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{time.Second, "grant-clean", "start", Running, nil},
		}},
		{"lost while running: stop, kill at 3/4 of the timeout, queue again", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{10 * time.Second, "lost", "stop", Stopping, nil},
			{10*time.Second + kill - 1, "tick", "", Stopping, nil},
			{10*time.Second + kill, "tick", "kill", Stopping, nil},
			{10*time.Second + kill + 1, "tick", "", Stopping, nil},
			{11*time.Second + kill, "stopped", "request-lock", Waiting, nil},
		}},
		{"lost while running, services stop in time: no kill", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "lost", "stop", Stopping, nil},
			{2 * time.Second, "stopped", "request-lock", Waiting, nil},
			{time.Second + kill, "tick", "", Waiting, nil},
		}},
		{"lost while holding: nothing was started", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant", "", Holding, nil},
			{time.Second, "lost", "request-lock", Waiting, nil},
			{stopTimeout, "tick", "", Waiting, nil},
		}},
		{"lost while waiting: queue again", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{time.Second, "lost", "request-lock", Waiting, nil},
		}},
		{"move: stop, then release naming the target, queue again", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "move:2", "stop", Stopping, nil},
			{time.Second, "move:3", "", Stopping, ErrBusy},
			{2 * time.Second, "stopped", "release-lock clean=true holder=1 next=2 move=1/1, request-lock", Waiting, nil},
		}},
		{"move whose services hang: killed at the full timeout, then released", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "move:3", "stop", Stopping, nil},
			{time.Second + stopTimeout, "tick", "kill", Stopping, nil},
			{2*time.Second + stopTimeout, "stopped", "release-lock clean=true holder=1 next=3 move=1/1, request-lock", Waiting, nil},
		}},
		{"lock lost during a move: kill deadline shortened, no release", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "move:2", "stop", Stopping, nil},
			{2 * time.Second, "lost", "", Stopping, nil},
			{2*time.Second + kill, "tick", "kill", Stopping, nil},
			{3*time.Second + kill, "stopped", "request-lock", Waiting, nil},
		}},
		{"move refused when not init, or to a node not UP; to itself a no-op", []step{
			{0, "boot", "stop", Booting, nil},
			{0, "move:2", "", Booting, ErrNotInit},
			{0, "stopped", "request-lock", Waiting, nil},
			{0, "move:2", "", Waiting, ErrNotInit},
			{0, "grant", "", Holding, nil},
			{0, "move:2", "", Holding, ErrNotInit},
			{stopTimeout, "tick", "start", Running, nil},
			{stopTimeout, "down:3", "", Running, nil},
			{stopTimeout, "move:3", "", Running, ErrNotUp},
			{stopTimeout, "move:7", "", Running, ErrNotUp},
			{stopTimeout, "move:1", "", Running, nil},
		}},
		{"a hand-over to another UP node is passed on once", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-move:2/3/5", "release-lock clean=true holder=3 next=2 move=3/5, request-lock", Waiting, nil},
			// The target never queued: the lock comes back, taken at once.
			{time.Second, "grant-move:2/3/5", "start", Running, nil},
		}},
		{"a new hand-over is passed on again", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-move:2/3/5", "release-lock clean=true holder=3 next=2 move=3/5, request-lock", Waiting, nil},
			{0, "grant-move:2/3/6", "release-lock clean=true holder=3 next=2 move=3/6, request-lock", Waiting, nil},
		}},
		{"a hand-over to this node is taken at once", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-move:1/3/5", "start", Running, nil},
		}},
		{"a hand-over to a node that went DOWN is taken", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "down:2", "", Waiting, nil},
			{0, "grant-move:2/3/5", "start", Running, nil},
		}},
		{"shutdown of the init: stop, release clean", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "shutdown", "stop", Stopping, nil},
			{2 * time.Second, "stopped", "release-lock clean=true holder=1", Done, nil},
		}},
		{"shutdown during a move releases without naming the target", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "move:2", "stop", Stopping, nil},
			{time.Second, "shutdown", "", Stopping, nil},
			{2 * time.Second, "stopped", "release-lock clean=true holder=1", Done, nil},
		}},
		{"shutdown then lost: stop, kill early, never release", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "shutdown", "stop", Stopping, nil},
			{time.Second, "lost", "", Stopping, nil},
			{time.Second + kill, "tick", "kill", Stopping, nil},
			{2*time.Second + kill, "stopped", "", Done, nil},
		}},
		{"shutdown while stopping after a lost lock: done, never queues again", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "lost", "stop", Stopping, nil},
			{2 * time.Second, "shutdown", "", Stopping, nil},
			{3 * time.Second, "stopped", "", Done, nil},
			{4 * time.Second, "grant-clean", "release-lock clean=true holder=2", Done, nil},
		}},
		{"shutdown during a move whose lock is then lost: done, never queues again", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant-clean", "start", Running, nil},
			{time.Second, "move:2", "stop", Stopping, nil},
			{time.Second, "lost", "", Stopping, nil},
			{2 * time.Second, "shutdown", "", Stopping, nil},
			{3 * time.Second, "stopped", "", Done, nil},
		}},
		{"shutdown while holding after a crash: the next holder must wait too", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "grant", "", Holding, nil},
			{time.Second, "shutdown", "release-lock invalid", Done, nil},
			{stopTimeout, "tick", "", Done, nil},
		}},
		{"a grant after shutdown is given back as it came", []step{
			{0, "boot", "stop", Booting, nil}, {0, "stopped", "request-lock", Waiting, nil},
			{0, "shutdown", "", Done, nil},
			{0, "grant", "release-lock invalid", Done, nil},
			{0, "grant-move:2/3/5", "release-lock clean=true holder=3 next=2 move=3/5", Done, nil},
		}},
	} {
		run(t, tc.name, tc.steps)
	}
}

// TestAtMostOneCopy checks the fencing arithmetic of the package doc over
// a range of stop timeouts and dlmd margins: the old init, told of the
// loss at t0, has killed its services before a new holder granted at any
// t1 >= t0 starts them.
func TestAtMostOneCopy(t *testing.T) {
	for _, st := range []time.Duration{time.Second, 8 * time.Second, 90 * time.Second} {
		for _, margin := range []time.Duration{0, 100 * time.Millisecond, 5 * time.Second} {
			old := New(Config{Self: 1, StopTimeout: st})
			nu := New(Config{Self: 2, StopTimeout: st})
			for _, c := range []*Core{old, nu} {
				c.Start(t0)
				c.UnitsStopped(t0)
			}
			old.Granted(t0, Record{Clean: true}.Encode(), true)
			lost := t0.Add(time.Minute)
			old.Lost(lost)
			grant := lost.Add(margin)
			nu.Granted(grant, [RecordLen]byte{}, false)
			if nu.Deadline().Sub(old.Deadline()) < st/4 {
				t.Errorf("stop timeout %v, margin %v: new init starts at %v, old kills at %v: less than a quarter of the timeout between",
					st, margin, nu.Deadline(), old.Deadline())
			}
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{{}, {Clean: true, Holder: 3}, {Clean: true, Holder: 1, Next: 511, MoveBy: 1, Move: 1 << 31}, {Clean: true, Holder: 2, Next: 3, MoveBy: 2, Move: 1, Boot: 1<<64 - 1}} {
		b := r.Encode()
		got, err := Decode(b[:])
		if err != nil || got != r {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", r, got, err)
		}
	}
	good := Record{Clean: true, Holder: 1}.Encode()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:31]},
		{"zero", make([]byte, RecordLen)},
		{"version", func() []byte { b := good; b[4] = 2; return b[:] }()},
		{"flags", func() []byte { b := good; b[5] = 2; return b[:] }()},
		{"reserved", func() []byte { b := good; b[7] = 1; return b[:] }()},
		{"nonce without a hand-over", func() []byte { b := good; b[31] = 1; return b[:] }()},
		{"next without mover", func() []byte { b := good; b[15] = 2; return b[:] }()},
	} {
		if _, err := Decode(tc.b); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: Decode = %v, want ErrRecord", tc.name, err)
		}
	}
}

// FuzzDecode: Decode of any bytes never panics, and what it accepts
// encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	g := Record{Clean: true, Holder: 1, Next: 2, MoveBy: 1, Move: 3}.Encode()
	f.Add(g[:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("error %v does not wrap ErrRecord", err)
			}
			return
		}
		if e := r.Encode(); string(e[:]) != string(b) {
			t.Fatalf("accepted %x, encodes to %x", b, e)
		}
	})
}

// TestMoveIDsSurviveRestarts: a node that restarts counts its moves from
// the start again; the boot nonce in the move id keeps a node that passed
// one of its earlier moves from taking the role instead of passing the
// new one on.
func TestMoveIDsSurviveRestarts(t *testing.T) {
	moveRecord := func(boot uint64) ([RecordLen]byte, bool) {
		c := New(Config{Self: 3, StopTimeout: stopTimeout, Nonce: boot})
		for _, n := range []uint32{1, 2, 3} {
			c.SetUp(n, true)
		}
		c.Start(t0)
		c.UnitsStopped(t0)
		c.Granted(t0, Record{Clean: true}.Encode(), true)
		if err := c.Move(t0, 2); err != nil {
			t.Fatal(err)
		}
		c.UnitsStopped(t0)
		for _, a := range c.Ready() {
			if a.Kind == ReleaseLock {
				return a.Value, a.Valid
			}
		}
		t.Fatal("no release")
		return [RecordLen]byte{}, false
	}
	c := New(Config{Self: 1, StopTimeout: stopTimeout})
	for _, n := range []uint32{1, 2, 3} {
		c.SetUp(n, true)
	}
	c.Start(t0)
	c.UnitsStopped(t0)
	c.Ready()
	for boot := uint64(1); boot <= 2; boot++ {
		v, valid := moveRecord(boot * 0x9e3779b97f4a7c15)
		c.Granted(t0, v, valid)
		var got []string
		for _, a := range c.Ready() {
			got = append(got, a.Kind.String())
		}
		if st, _ := c.State(); st != Waiting || strings.Join(got, " ") != "release-lock request-lock" {
			t.Fatalf("node 3's move after boot %d: %v, state %v; want it passed on to node 2", boot, got, st)
		}
	}
}
