package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// UnitStatus is what systemd says of one unit.
type UnitStatus struct {
	// LoadState: loaded, not-found, masked, error, ...
	LoadState string
	// ActiveState: active, inactive, failed, activating, deactivating.
	ActiveState string
	SubState    string
	// Since is when the unit entered its active state (zero: unknown).
	Since time.Time
	// MainPID is its main process on the node (0: none).
	MainPID int
}

// ErrNoUnit is wrapped when systemd knows no unit of that name.
var ErrNoUnit = errors.New("no such unit")

// Units is what an [Elector] needs of systemd: the jobs and states of the
// units it runs while it holds its lock (keepalived's applications
// implement it too).
type Units interface {
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	// Kill sends sig to every process of the unit.
	Kill(ctx context.Context, unit string, sig syscall.Signal) error
	Status(ctx context.Context, unit string) (UnitStatus, error)
	// Wants lists the units unit wants (its Wants= and the .wants/
	// directories).
	Wants(ctx context.Context, unit string) ([]string, error)
}

// Systemd is the part of systemd's D-Bus API initfailover uses: DBus
// carries it to the node's systemd, tests give a recording fake.
// Start, Stop and Restart wait for their job to finish.
type Systemd interface {
	Units
	Restart(ctx context.Context, unit string) error
	Enable(ctx context.Context, unit string) error
	Disable(ctx context.Context, unit string) error
	// Isolate starts target in mode isolate (systemctl isolate): every
	// unit it does not pull in is stopped. It waits for the job.
	Isolate(ctx context.Context, target string) error
	// Deps says what starting unit pulls in and whether it may be
	// isolated.
	Deps(ctx context.Context, unit string) (UnitDeps, error)
	Close()
}

// UnitDeps is what starting a unit pulls in.
type UnitDeps struct {
	// AllowIsolate: systemd may isolate the unit (AllowIsolate=yes).
	AllowIsolate bool
	// Pulls are its Requires=, Requisite=, Wants= and BindsTo= (the
	// .wants/ and .requires/ directories included): the units a start
	// job of it keeps, and so an isolate to it does not stop.
	Pulls []string
}

// DBus is Systemd over the system bus.
type DBus struct{ c *sddbus.Conn }

// NewDBus connects to systemd on the system bus. The connection lasts
// until Close, not until ctx ends: godbus closes a connection made with a
// context when that context ends, and the stop of the init services at
// shutdown comes after the daemon's context ended (TestBoot saw the stop
// fail with "dbus: connection closed by user", and the services left to
// systemd's kill).
func NewDBus(ctx context.Context) (*DBus, error) {
	c, err := sddbus.NewSystemConnectionContext(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("initfailover: connect to systemd: %w", err)
	}
	return &DBus{c: c}, nil
}

// Close closes the bus connection.
func (d *DBus) Close() { d.c.Close() }

// job runs one systemd job and waits for its result.
func job(ctx context.Context, what, unit string, call func(chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := call(ch); err != nil {
		return fmt.Errorf("initfailover: %s %s: %w", what, unit, err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("initfailover: %s %s: job %s (see journalctl -u %s)", what, unit, r, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("initfailover: %s %s: %w", what, unit, ctx.Err())
	}
}

// Start starts unit (mode replace).
func (d *DBus) Start(ctx context.Context, unit string) error {
	return job(ctx, "start", unit, func(ch chan<- string) (int, error) { return d.c.StartUnitContext(ctx, unit, "replace", ch) })
}

// Stop stops unit (mode replace).
func (d *DBus) Stop(ctx context.Context, unit string) error {
	return job(ctx, "stop", unit, func(ch chan<- string) (int, error) { return d.c.StopUnitContext(ctx, unit, "replace", ch) })
}

// Restart restarts unit (mode replace).
func (d *DBus) Restart(ctx context.Context, unit string) error {
	return job(ctx, "restart", unit, func(ch chan<- string) (int, error) { return d.c.RestartUnitContext(ctx, unit, "replace", ch) })
}

// Kill sends sig to every process of unit.
func (d *DBus) Kill(ctx context.Context, unit string, sig syscall.Signal) error {
	if err := d.c.KillUnitWithTarget(ctx, unit, sddbus.All, int32(sig)); err != nil {
		return fmt.Errorf("initfailover: kill %s: %w", unit, err)
	}
	return nil
}

// Enable enables unit's file, then reloads systemd as systemctl does.
func (d *DBus) Enable(ctx context.Context, unit string) error {
	if _, _, err := d.c.EnableUnitFilesContext(ctx, []string{unit}, false, false); err != nil {
		return fmt.Errorf("initfailover: enable %s: %w", unit, err)
	}
	return d.c.ReloadContext(ctx)
}

// Disable disables unit's file, then reloads systemd.
func (d *DBus) Disable(ctx context.Context, unit string) error {
	if _, err := d.c.DisableUnitFilesContext(ctx, []string{unit}, false); err != nil {
		return fmt.Errorf("initfailover: disable %s: %w", unit, err)
	}
	return d.c.ReloadContext(ctx)
}

// Status reads unit's states, since when, and its main pid.
func (d *DBus) Status(ctx context.Context, unit string) (UnitStatus, error) {
	p, err := d.c.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitStatus{}, fmt.Errorf("initfailover: status of %s: %w", unit, err)
	}
	s := UnitStatus{LoadState: str(p["LoadState"]), ActiveState: str(p["ActiveState"]), SubState: str(p["SubState"])}
	if s.LoadState == "not-found" {
		return s, fmt.Errorf("initfailover: %s: %w", unit, ErrNoUnit)
	}
	key := "ActiveEnterTimestamp"
	if s.ActiveState != "active" {
		key = "InactiveEnterTimestamp"
	}
	if us, ok := p[key].(uint64); ok && us > 0 {
		s.Since = time.UnixMicro(int64(us))
	}
	if len(unit) > len(".service") && unit[len(unit)-len(".service"):] == ".service" {
		if sp, err := d.c.GetServicePropertyContext(ctx, unit, "MainPID"); err == nil {
			if pid, ok := sp.Value.Value().(uint32); ok {
				s.MainPID = int(pid)
			}
		}
	}
	return s, nil
}

// Wants lists what unit wants.
func (d *DBus) Wants(ctx context.Context, unit string) ([]string, error) {
	p, err := d.c.GetUnitPropertyContext(ctx, unit, "Wants")
	if err != nil {
		return nil, fmt.Errorf("initfailover: what %s wants: %w", unit, err)
	}
	w, _ := p.Value.Value().([]string)
	return w, nil
}

// Isolate isolates target: systemctl isolate.
func (d *DBus) Isolate(ctx context.Context, target string) error {
	return job(ctx, "isolate", target, func(ch chan<- string) (int, error) { return d.c.StartUnitContext(ctx, target, "isolate", ch) })
}

// Deps reads what unit pulls in and its AllowIsolate.
func (d *DBus) Deps(ctx context.Context, unit string) (UnitDeps, error) {
	p, err := d.c.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitDeps{}, fmt.Errorf("initfailover: dependencies of %s: %w", unit, err)
	}
	if str(p["LoadState"]) == "not-found" {
		return UnitDeps{}, fmt.Errorf("initfailover: %s: %w", unit, ErrNoUnit)
	}
	u := UnitDeps{}
	u.AllowIsolate, _ = p["AllowIsolate"].(bool)
	for _, k := range []string{"Requires", "Requisite", "Wants", "BindsTo"} {
		l, _ := p[k].([]string)
		u.Pulls = append(u.Pulls, l...)
	}
	return u, nil
}

func str(v any) string { s, _ := v.(string); return s }

// UnderSystemd reports whether systemd is the node's init (sd_booted).
func UnderSystemd() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}
