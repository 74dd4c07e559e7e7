package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/client/cluster"
)

// Follower runs `ssi events` on a node and timestamps each event as it
// arrives, for tests and benchmarks that measure when every node heard of
// a change.
type Follower struct {
	Node   string
	mu     sync.Mutex
	events []Arrival
	cancel context.CancelFunc
	done   chan struct{}
}

// Arrival is one event and when the follower received it.
type Arrival struct {
	At    time.Time
	Event cluster.Event
}

// Follow starts following a node's events after epoch from.
func (l *Lab) Follow(node string, from uint64) (*Follower, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Follower{Node: node, cancel: cancel, done: make(chan struct{})}
	cmd, err := l.Command(ctx, node, "ssi", "events", "-o", "json", "--from", fmt.Sprint(from))
	if err != nil {
		cancel()
		return nil, err
	}
	// nsenter forks the command into the node's PID namespace; killing
	// nsenter alone would leave `ssi events` running with our pipe open.
	// Both stay in one process group, which Stop kills.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e cluster.Event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			f.mu.Lock()
			f.events = append(f.events, Arrival{time.Now(), e})
			f.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	return f, nil
}

// Stop ends the follower.
func (f *Follower) Stop() {
	f.cancel()
	<-f.done
}

// Events returns what arrived so far.
func (f *Follower) Events() []Arrival {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Arrival(nil), f.events...)
}

// Wait waits for an event of type typ about node number n and returns when
// it arrived.
func (f *Follower) Wait(typ cluster.EventType, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, a := range f.Events() {
			if a.Event.Type == typ && a.Event.Node.Number == n {
				return a.At, nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("lab: %s: no %s for node %d within %s; saw %s", f.Node, typ, n, timeout, f.Summary())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Summary renders the events as "[NODEDOWN 2@4, ...]".
func (f *Follower) Summary() string {
	var parts []string
	for _, a := range f.Events() {
		parts = append(parts, fmt.Sprintf("%s %d@%d", a.Event.Type, a.Event.Node.Number, a.Event.Epoch))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// KillAndMeasure power-cuts victim and returns how long it took until every
// running survivor's `ssi events` delivered NODEDOWN for it.
func (l *Lab) KillAndMeasure(ctx context.Context, victim string, timeout time.Duration) (time.Duration, error) {
	s := l.State()
	if s == nil {
		return 0, ErrNoLab
	}
	vs, err := s.Node(victim)
	if err != nil {
		return 0, err
	}
	var survivors []string
	for _, n := range s.Nodes {
		if n.Name != vs.Name && alive(n.PID) {
			survivors = append(survivors, n.Name)
		}
	}
	if len(survivors) == 0 {
		return 0, fmt.Errorf("lab: no survivor would be left to see %s die", vs.Name)
	}
	v, err := l.View(ctx, survivors[0])
	if err != nil {
		return 0, err
	}
	num := 0
	for _, m := range v.Nodes {
		if m.Name == vs.Name {
			num = m.Number
		}
	}
	if num == 0 {
		return 0, fmt.Errorf("lab: %s is not in the membership: %s", vs.Name, v.Summary())
	}
	var fs []*Follower
	defer func() {
		for _, f := range fs {
			f.Stop()
		}
	}()
	for _, n := range survivors {
		f, err := l.Follow(n, v.Epoch)
		if err != nil {
			return 0, err
		}
		fs = append(fs, f)
	}
	// The followers replay from v.Epoch, so none misses the event; waiting
	// until each has connected keeps the connect time out of the figure.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := l.Kill(ctx, vs.Name); err != nil {
		return 0, err
	}
	var worst time.Duration
	for _, f := range fs {
		at, err := f.Wait(cluster.NodeDown, num, timeout)
		if err != nil {
			return 0, err
		}
		if d := at.Sub(start); d > worst {
			worst = d
		}
	}
	return worst, nil
}
