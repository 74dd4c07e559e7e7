package server

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Scoper puts a started program in a cgroup of its own, so the node
// accounts it to its user and it outlives a restart of vprocd.
type Scoper interface {
	// Scope moves process pid (the program of cpid, run as uid) into a
	// new scope. cpid 0 is a gate started ahead, whose program and cpid
	// are not known yet (runner.Warm).
	Scope(ctx context.Context, pid int, uid uint32, cpid int64) error
}

// UnderSystemd reports whether this node booted with systemd (the test of
// sd_booted(3)).
func UnderSystemd() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// InContainer reports whether this node is a container (systemd writes
// the container manager's name to /run/systemd/container): its kernel,
// and so /proc/stat's run queue, is shared with its neighbours.
func InContainer() bool {
	b, err := os.ReadFile("/run/systemd/container")
	return err == nil && len(bytes.TrimSpace(b)) > 0
}

// SystemdScopes makes each program a transient scope in its user's slice
// (user-<uid>.slice) through systemd's D-Bus API.
type SystemdScopes struct {
	conn    *sddbus.Conn
	started atomic.Uint64 // scopes started, numbering their names
}

// NewSystemdScopes connects to systemd through the system bus, or, where
// no bus answers, as root on systemd's private socket
// (/run/systemd/private). The bus, not the private socket, though that
// skips the bus daemon's hops (a scope started alone took 3.6 against 4.9
// ms in bench/vproc): systemd sends every signal it emits to every
// private connection unconditionally (the bus daemon only the ones a match
// asks for), and a node that starts programs emits several per scope
// (units and jobs new, changed, removed) to every subscriber: decoding
// them was a third of vprocd's CPU time in a run of execs, and a node's
// exec of true took 4.74 and 4.98 ms p50 on the private socket against
// 4.08 and 3.64 on the bus (500 each, in turns). A scope is started ahead
// of a program (runner.Warm) but for a caller's first.
//
// The connection lasts until Close, not until ctx ends (godbus closes a
// connection made with a context when that context ends): a program
// started or moved here while vprocd stops still gets its scope.
func NewSystemdScopes(ctx context.Context) (*SystemdScopes, error) {
	ctx = context.WithoutCancel(ctx)
	c, err := sddbus.NewSystemConnectionContext(ctx)
	if err == nil {
		return &SystemdScopes{conn: c}, nil
	}
	if os.Geteuid() == 0 {
		if c, perr := sddbus.NewSystemdConnectionContext(ctx); perr == nil {
			return &SystemdScopes{conn: c}, nil
		}
	}
	return nil, fmt.Errorf("vproc: connect to systemd: %w", err)
}

// scopeJobMode is the job mode of a scope's start. "replace", not
// "fail": a user's slice that its last scope just left has a stop job
// queued, and "fail" then refuses the next scope in it as a destructive
// transaction (back-to-back programs of one user hit it), leaving that
// program in vprocd's cgroup; "replace" starts the slice again instead.
const scopeJobMode = "replace"

// Close closes the connection to systemd.
func (s *SystemdScopes) Close() { s.conn.Close() }

// scopeTimeout bounds the wait for systemd to start a scope.
const scopeTimeout = 2 * time.Second

// ScopeName is the unit of the program of cpid, the n-th this vprocd
// started: a cpid repeats (one caller runs several programs in turn, a
// pid is reused while an old scope still holds what its program left),
// a unit name may not.
func ScopeName(cpid int64, n uint64) string { return fmt.Sprintf("openssi-vproc-%d-%d.scope", cpid, n) }

// Scope implements Scoper.
func (s *SystemdScopes) Scope(ctx context.Context, pid int, uid uint32, cpid int64) error {
	ctx, cancel := context.WithTimeout(ctx, scopeTimeout)
	defer cancel()
	desc := fmt.Sprintf("OpenSSI remote exec, cpid %d", cpid)
	if cpid == 0 {
		// Named by its pid: a name's number is only unique with n.
		desc, cpid = fmt.Sprintf("OpenSSI remote exec, started ahead as pid %d", pid), int64(pid)
	}
	props := []sddbus.Property{
		sddbus.PropDescription(desc),
		sddbus.PropSlice(fmt.Sprintf("user-%d.slice", uid)),
		sddbus.PropPids(uint32(pid)),
		// Gone once its processes are, failed or not.
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
	done := make(chan string, 1)
	name := ScopeName(cpid, s.started.Add(1))
	if _, err := s.conn.StartTransientUnitContext(ctx, name, scopeJobMode, props, done); err != nil {
		return fmt.Errorf("vproc: start %s: %w", name, err)
	}
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("vproc: start %s: %s", name, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("vproc: start %s: %w", name, ctx.Err())
	}
}
