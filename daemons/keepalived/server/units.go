package server

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Spec is how an application's transient unit runs it.
type Spec struct {
	// Argv is the program (an absolute path) and its arguments.
	Argv []string
	// User runs it.
	User        string
	Description string
	// StopTimeout is its TimeoutStopSec: systemd kills what still runs
	// after it when the unit stops.
	StopTimeout time.Duration
	// BindsTo is a unit whose stop stops it ("" none): the daemon's own
	// unit, so that an application never outlives openssi-keepalived.
	BindsTo string
}

// UnitState is what systemd says of a unit.
type UnitState struct {
	// Active: active, activating, deactivating, inactive, failed.
	Active  string
	MainPID int
}

// Running reports whether the unit runs or changes state.
func (s UnitState) Running() bool { return s.Active != "inactive" && s.Active != "failed" }

// ErrNoUnit is wrapped when systemd knows no unit of that name (a
// transient unit is gone once it stopped).
var ErrNoUnit = errors.New("no such unit")

// Units runs applications as transient units: DBus carries them to the
// node's systemd, tests give unitfake, which runs plain processes.
type Units interface {
	// Start starts a transient unit and waits for its start job: the
	// program was executed (Type=exec) or it failed.
	Start(ctx context.Context, unit string, spec Spec) error
	// Run runs spec as a oneshot transient unit and waits for it: nil
	// when it exited 0; it is stopped when ctx ends.
	Run(ctx context.Context, unit string, spec Spec) error
	// Stop stops the unit and waits for its job.
	Stop(ctx context.Context, unit string) error
	// Kill sends sig to every process of the unit.
	Kill(ctx context.Context, unit string, sig syscall.Signal) error
	// State reads the unit's state (ErrNoUnit: none).
	State(ctx context.Context, unit string) (UnitState, error)
	Close()
}

// DBus is Units over the system bus.
type DBus struct{ c *sddbus.Conn }

// NewDBus connects to systemd on the system bus. The connection lasts
// until Close, not until ctx ends (godbus closes a connection made with a
// context when that context ends): what keepalived does as it stops still
// reaches systemd.
func NewDBus(ctx context.Context) (*DBus, error) {
	c, err := sddbus.NewSystemConnectionContext(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("keepalived: connect to systemd: %w", err)
	}
	return &DBus{c: c}, nil
}

// Close closes the bus connection.
func (d *DBus) Close() { d.c.Close() }

func job(ctx context.Context, what, unit string, call func(chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := call(ch); err != nil {
		return fmt.Errorf("keepalived: %s %s: %w", what, unit, err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("keepalived: %s %s: job %s (see journalctl -u %s)", what, unit, r, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("keepalived: %s %s: %w", what, unit, ctx.Err())
	}
}

// Start starts a transient service running spec.
func (d *DBus) Start(ctx context.Context, unit string, spec Spec) error {
	// A failed unit of the same name would refuse the new one.
	_ = d.c.ResetFailedUnitContext(ctx, unit)
	props := []sddbus.Property{
		sddbus.PropDescription(spec.Description),
		sddbus.PropExecStart(spec.Argv, true),
		sddbus.PropType("exec"),
		{Name: "User", Value: dbus.MakeVariant(spec.User)},
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
		{Name: "TimeoutStopUSec", Value: dbus.MakeVariant(uint64(spec.StopTimeout / time.Microsecond))},
	}
	if spec.BindsTo != "" {
		props = append(props, sddbus.PropBindsTo(spec.BindsTo), sddbus.PropAfter(spec.BindsTo))
	}
	for try := 0; ; try++ {
		err := job(ctx, "start", unit, func(ch chan<- string) (int, error) {
			return d.c.StartTransientUnitContext(ctx, unit, "replace", props, ch)
		})
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != "org.freedesktop.systemd1.UnitExists" || try >= 40 {
			return err
		}
		// The unit that just ended is not collected yet: a restart in
		// place must not count that as a failure.
		if s, serr := d.State(ctx, unit); serr == nil && s.Running() {
			return fmt.Errorf("keepalived: start %s: it is already %s", unit, s.Active)
		}
		_ = d.c.ResetFailedUnitContext(ctx, unit)
		select {
		case <-time.After(25 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// Run runs spec as a oneshot unit and waits for its end.
func (d *DBus) Run(ctx context.Context, unit string, spec Spec) error {
	_ = d.c.ResetFailedUnitContext(ctx, unit)
	props := []sddbus.Property{
		sddbus.PropDescription(spec.Description),
		sddbus.PropExecStart(spec.Argv, true),
		sddbus.PropType("oneshot"),
		{Name: "User", Value: dbus.MakeVariant(spec.User)},
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
		{Name: "TimeoutStopUSec", Value: dbus.MakeVariant(uint64(spec.StopTimeout / time.Microsecond))},
	}
	err := job(ctx, "run", unit, func(ch chan<- string) (int, error) {
		return d.c.StartTransientUnitContext(ctx, unit, "replace", props, ch)
	})
	if ctx.Err() != nil {
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Kill(stop, unit, syscall.SIGKILL)
	}
	return err
}

// Stop stops unit.
func (d *DBus) Stop(ctx context.Context, unit string) error {
	err := job(ctx, "stop", unit, func(ch chan<- string) (int, error) { return d.c.StopUnitContext(ctx, unit, "replace", ch) })
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchUnit" {
		return fmt.Errorf("keepalived: %s: %w", unit, ErrNoUnit)
	}
	return err
}

// Kill sends sig to every process of unit.
func (d *DBus) Kill(ctx context.Context, unit string, sig syscall.Signal) error {
	if err := d.c.KillUnitWithTarget(ctx, unit, sddbus.All, int32(sig)); err != nil {
		var de dbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchUnit" {
			return fmt.Errorf("keepalived: %s: %w", unit, ErrNoUnit)
		}
		return fmt.Errorf("keepalived: kill %s: %w", unit, err)
	}
	return nil
}

// State reads unit's state and main pid.
func (d *DBus) State(ctx context.Context, unit string) (UnitState, error) {
	p, err := d.c.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitState{}, fmt.Errorf("keepalived: state of %s: %w", unit, err)
	}
	load, _ := p["LoadState"].(string)
	active, _ := p["ActiveState"].(string)
	if load == "not-found" {
		return UnitState{Active: "inactive"}, fmt.Errorf("keepalived: %s: %w", unit, ErrNoUnit)
	}
	s := UnitState{Active: active}
	if sp, err := d.c.GetServicePropertyContext(ctx, unit, "MainPID"); err == nil {
		if pid, ok := sp.Value.Value().(uint32); ok {
			s.MainPID = int(pid)
		}
	}
	return s, nil
}
