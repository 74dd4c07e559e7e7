// Package unitfake is a stand-in for systemd's transient units in tests of
// openssi-keepalived: each unit is a plain child process of the test
// (systemd is not PID 1 on a test host; the lab e2e drives the real one).
// A shared Timeline records when each node's copy of a unit ran, so that
// a test can check that no two nodes ran one at once.
package unitfake

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/keepalived/server"
)

// Event is a unit starting or ending on a node.
type Event struct {
	Time   time.Time
	Node   uint32
	Unit   string
	Active bool
	PID    int
}

// Timeline collects the events of every node. Safe for concurrent use.
type Timeline struct {
	mu     sync.Mutex
	events []Event
}

func (t *Timeline) add(e Event) {
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
}

// Events returns a copy of the events so far.
func (t *Timeline) Events() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Event(nil), t.events...)
}

// Starts counts the starts of unit on node.
func (t *Timeline) Starts(node uint32, unit string) int {
	n := 0
	for _, e := range t.Events() {
		if e.Node == node && e.Unit == unit && e.Active {
			n++
		}
	}
	return n
}

// Overlaps returns the moments at which unit ran on two nodes at once.
func (t *Timeline) Overlaps(unit string) []string {
	on := map[uint32]bool{}
	var out []string
	for _, e := range t.Events() {
		if e.Unit != unit {
			continue
		}
		on[e.Node] = e.Active
		n := 0
		for _, a := range on {
			if a {
				n++
			}
		}
		if n > 1 {
			out = append(out, fmt.Sprintf("%s: node %d started it while another ran it", e.Time.Format("15:04:05.000"), e.Node))
		}
	}
	return out
}

type unit struct {
	cmd  *exec.Cmd
	done chan struct{}
	code int
}

// Units runs each unit as a child process. Its User is ignored (the
// test's user runs it).
type Units struct {
	node uint32
	tl   *Timeline
	mu   sync.Mutex
	u    map[string]*unit
}

var _ server.Units = (*Units)(nil)

// New returns node's fake, recording on tl.
func New(node uint32, tl *Timeline) *Units {
	return &Units{node: node, tl: tl, u: map[string]*unit{}}
}

// Start runs spec.Argv.
func (f *Units) Start(_ context.Context, name string, spec server.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.u[name]; ok {
		select {
		case <-u.done:
		default:
			return fmt.Errorf("unitfake: %s is already active", name)
		}
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("unitfake: start %s: %w", name, err)
	}
	u := &unit{cmd: cmd, done: make(chan struct{})}
	f.u[name] = u
	f.tl.add(Event{Time: time.Now(), Node: f.node, Unit: name, Active: true, PID: cmd.Process.Pid})
	go func() {
		_ = cmd.Wait()
		u.code = cmd.ProcessState.ExitCode()
		f.tl.add(Event{Time: time.Now(), Node: f.node, Unit: name, Active: false, PID: cmd.Process.Pid})
		close(u.done)
	}()
	return nil
}

func (f *Units) get(name string) (*unit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.u[name]
	if !ok {
		return nil, fmt.Errorf("unitfake: %s: %w", name, server.ErrNoUnit)
	}
	return u, nil
}

// Run runs spec.Argv and waits for it (killed when ctx ends).
func (f *Units) Run(ctx context.Context, _ string, spec server.Spec) error {
	cmd := exec.CommandContext(ctx, spec.Argv[0], spec.Argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		if len(out) > 0 {
			return fmt.Errorf("unitfake: %w: %s", err, out)
		}
		return fmt.Errorf("unitfake: %w", err)
	}
	return nil
}

// Stop sends SIGTERM to the unit's process group and waits for it, then
// SIGKILL after 5s.
func (f *Units) Stop(ctx context.Context, name string) error {
	u, err := f.get(name)
	if err != nil {
		return err
	}
	_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
		<-u.done
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// Kill signals the unit's process group.
func (f *Units) Kill(_ context.Context, name string, sig syscall.Signal) error {
	u, err := f.get(name)
	if err != nil {
		return err
	}
	select {
	case <-u.done:
		return nil
	default:
	}
	if err := syscall.Kill(-u.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// State says active while the process runs, then failed or inactive.
func (f *Units) State(_ context.Context, name string) (server.UnitState, error) {
	u, err := f.get(name)
	if err != nil {
		return server.UnitState{Active: "inactive"}, err
	}
	select {
	case <-u.done:
		if u.code != 0 {
			return server.UnitState{Active: "failed"}, nil
		}
		return server.UnitState{Active: "inactive"}, nil
	default:
		return server.UnitState{Active: "active", MainPID: u.cmd.Process.Pid}, nil
	}
}

// PID returns the main pid of a running unit (0: none).
func (f *Units) PID(name string) int {
	s, _ := f.State(context.Background(), name)
	return s.MainPID
}

// Close stops every unit.
func (f *Units) Close() {
	f.mu.Lock()
	names := make([]string, 0, len(f.u))
	for n := range f.u {
		names = append(names, n)
	}
	f.mu.Unlock()
	for _, n := range names {
		_ = f.Stop(context.Background(), n)
	}
}
