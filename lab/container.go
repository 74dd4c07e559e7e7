package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/openssi/openssi/internal/nspawn"
)

func (l *Lab) nspawnOptions(n NodeState) nspawn.Options {
	s := l.State()
	// /dev/fuse for vprocd's /cluster/proc.
	binds := nspawn.FUSEBinds()
	if !s.Bare {
		// A bare node gets the repository from the lab's server instead.
		binds = append([]nspawn.Bind{{Host: s.Dist, Container: "/srv/openssi-dist", ReadOnly: true}}, binds...)
	}
	o := nspawn.Options{
		Dir:    n.Root(),
		Name:   n.Machine,
		Bridge: s.Bridge,
		Binds:  binds,
		// cfsd serves files by handle: nspawn's system-call filter
		// refuses open_by_handle_at(2) to its containers' services
		// (a container with CAP_DAC_READ_SEARCH could otherwise open
		// the host's files by a forged handle; cfsd opens only handles
		// it signed). A machine without nspawn needs nothing of this.
		Args: []string{"--console=passive", "--system-call-filter=open_by_handle_at"},
	}
	if s.CRIU {
		o.Env, o.Args = criuNspawn(o.Env, o.Args)
	}
	if s.Bare {
		// A bare node is named as the inventory names it, like a machine
		// an administrator rolls out to (the full lab's nodes keep
		// their machine names).
		o.Hostname = n.Name
	}
	return o
}

// criuNspawn adds what a node needs for CRIU to dump and restore its
// processes: no system-call filter (the kernel refuses
// PTRACE_O_SUSPEND_SECCOMP to a tracer that is itself filtered, so CRIU
// cannot dump anything under nspawn's default filter), the capabilities
// nspawn drops that a restore uses (CAP_SYS_RESOURCE: the restored
// limits, where the host has it; CAP_SYS_TIME: the clock offsets of the
// restored time namespace; CAP_CHECKPOINT_RESTORE: the pids of the
// restored tree). The node's criuSysctlUnit makes the few per-namespace
// sysctls CRIU writes writable. Only a lab made for CRIU runs so: its
// nodes are less confined than the others.
func criuNspawn(env, args []string) ([]string, []string) {
	return append(env, "SYSTEMD_SECCOMP=0"),
		append(args, "--capability=CAP_SYS_RESOURCE,CAP_SYS_TIME,CAP_CHECKPOINT_RESTORE")
}

// criuSysctlUnit runs at a CRIU node's boot: nspawn mounts /proc/sys
// read-only, and CRIU (criu check, and a restore) writes the next pid of
// its PID namespace and the next IPC ids of its IPC namespace. Each file
// is bound over itself and made writable; they are the node's own (a
// write acts on the writer's namespaces), not the host's. Not the whole
// of /proc/sys and /sys (SYSTEMD_NSPAWN_API_VFS_WRITABLE): networkd then
// waits for a udev the node does not run, and the node never gets its
// address.
const criuSysctlUnit = `[Unit]
Description=Writable per-namespace sysctls for CRIU (OpenSSI lab)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec 'for f in ns_last_pid sem_next_id msg_next_id shm_next_id; do p=/proc/sys/kernel/$$f; mount --bind $$p $$p; mount -o remount,bind,rw $$p; done'

[Install]
WantedBy=sysinit.target
`

// boot starts node i's container and waits until its systemd is up.
func (l *Lab) boot(ctx context.Context, i int) error {
	n := l.State().Nodes[i]
	console, err := os.OpenFile(filepath.Join(n.Dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close()
	o := l.nspawnOptions(n)
	o.Log = console
	c, err := nspawn.Boot(ctx, o)
	if err != nil {
		return fmt.Errorf("lab: boot %s: %w", n.Name, err)
	}
	if err := l.setPID(n.Name, c.NspawnPID()); err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	// "degraded" is booted too: the node's own tests say what failed.
	if state, err := c.WaitSystemRunning(bctx); state != "running" && state != "degraded" {
		return fmt.Errorf("lab: %s did not finish booting: %w; see %s", n.Name, err, filepath.Join(n.Dir, "console.log"))
	}
	if l.State().CRIU {
		return l.ensureCriuSysctls(bctx, n.Name, c)
	}
	return nil
}

// criuSysctlsReadOnly prints each of the sysctls criuSysctlUnit makes
// writable that is still mounted read-only.
const criuSysctlsReadOnly = `for f in ns_last_pid sem_next_id msg_next_id shm_next_id; do p=/proc/sys/kernel/$f; findmnt -n -o OPTIONS -T "$p" | grep -q '^rw' || echo "$p"; done`

// ensureCriuSysctls checks, once a CRIU node has booted, that its boot
// unit left the sysctls writable, and applies the unit once more where it
// did not (a CI run once found ns_last_pid read-only on one node, and
// every CRIU move to that node then failed): a lab whose CRIU cannot work
// fails here, naming the files, not in a test minutes later.
func (l *Lab) ensureCriuSysctls(ctx context.Context, node string, c *nspawn.Container) error {
	ro, err := c.Exec(ctx, "/bin/sh", "-c", criuSysctlsReadOnly)
	if err != nil {
		return fmt.Errorf("lab: %s: check CRIU's sysctls: %w", node, err)
	}
	if ro = strings.TrimSpace(ro); ro == "" {
		return nil
	}
	unit, _ := c.Exec(ctx, "systemctl", "status", "--no-pager", "--lines=5", "openssi-lab-criu.service")
	l.progress("%s: read-only after boot: %s; applying openssi-lab-criu.service again; its state:\n%s",
		node, strings.ReplaceAll(ro, "\n", " "), strings.TrimSpace(unit))
	if _, err := c.Exec(ctx, "systemctl", "restart", "openssi-lab-criu.service"); err != nil {
		return fmt.Errorf("lab: %s: make CRIU's sysctls writable: %w", node, err)
	}
	if ro, err = c.Exec(ctx, "/bin/sh", "-c", criuSysctlsReadOnly); err != nil || strings.TrimSpace(ro) != "" {
		return fmt.Errorf("lab: %s: CRIU's sysctls still read-only after openssi-lab-criu.service ran again: %s (%v)", node, strings.TrimSpace(ro), err)
	}
	return nil
}

// container finds a running node's container.
func (l *Lab) container(node string) (*NodeState, *nspawn.Container, error) {
	s := l.State()
	if s == nil {
		return nil, nil, ErrNoLab
	}
	n, err := s.Node(node)
	if err != nil {
		return nil, nil, err
	}
	c, err := nspawn.Attach(l.nspawnOptions(*n), n.PID)
	if err != nil {
		return n, nil, fmt.Errorf("lab: %s is not running (killed? `lab start %s`)", n.Name, strings.TrimPrefix(n.Name, "node"))
	}
	return n, c, nil
}

// Exec runs a command inside a node (all its namespaces, a clean
// environment) and returns its combined output.
func (l *Lab) Exec(ctx context.Context, node string, args ...string) (string, error) {
	_, c, err := l.container(node)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := c.CommandEnv(ctx, l.consulEnv(), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("lab: %s: %q: %w: %s", node, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Command prepares a command inside a node, for callers that want to wire
// its standard streams themselves (`lab shell`, `lab exec`).
func (l *Lab) Command(ctx context.Context, node string, args ...string) (*exec.Cmd, error) {
	_, c, err := l.container(node)
	if err != nil {
		return nil, err
	}
	cmd := c.CommandEnv(ctx, l.consulEnv(), args...)
	if t := os.Getenv("TERM"); t != "" {
		for i, a := range cmd.Env {
			if a == "TERM=dumb" {
				cmd.Env[i] = "TERM=" + t
			}
		}
	}
	return cmd, nil
}

// Kill is a power loss: SIGKILL of the node's systemd takes every process
// of its PID namespace with it.
func (l *Lab) Kill(ctx context.Context, node string) error {
	n, c, err := l.container(node)
	if err != nil {
		return err
	}
	c.Kill()
	if nspawn.Alive(n.PID) {
		return fmt.Errorf("lab: kill %s: systemd-nspawn %d is still running", n.Name, n.PID)
	}
	return l.setPID(n.Name, 0)
}

func alive(pid int) bool { return nspawn.Alive(pid) }

// killContainer kills a container of ours found by its nspawn pid.
func killContainer(nspawnPID int) error {
	c, err := nspawn.Attach(nspawn.Options{Name: fmt.Sprintf("pid-%d", nspawnPID)}, nspawnPID)
	if err != nil {
		return nil // already gone
	}
	c.Kill()
	if nspawn.Alive(nspawnPID) {
		return fmt.Errorf("lab: systemd-nspawn %d is still running", nspawnPID)
	}
	return nil
}

func (l *Lab) setPID(name string, pid int) error {
	l.mu.Lock()
	for i := range l.state.Nodes {
		if l.state.Nodes[i].Name == name {
			l.state.Nodes[i].PID = pid
		}
	}
	l.mu.Unlock()
	return l.save()
}

// Start boots a killed node again, with the same disk.
func (l *Lab) Start(ctx context.Context, node string) error {
	s := l.State()
	if s == nil {
		return ErrNoLab
	}
	n, err := s.Node(node)
	if err != nil {
		return err
	}
	if alive(n.PID) {
		return fmt.Errorf("lab: %s is already running", n.Name)
	}
	for i := range s.Nodes {
		if s.Nodes[i].Name == n.Name {
			return l.boot(ctx, i)
		}
	}
	return nil
}

// Memory returns the proportional set size of every process of a running
// node, in KiB.
func (l *Lab) Memory(node string) (int64, error) {
	_, c, err := l.container(node)
	if err != nil {
		return 0, err
	}
	return c.MemoryPSS()
}
