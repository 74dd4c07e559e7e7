// Package nspawn boots systemd-nspawn containers of a root filesystem
// (see internal/rootfs) with real systemd as PID 1, runs commands in them
// and ends them — politely (Stop) or as a power loss (Kill). The package
// tests, the boot test and the lab (`make lab`) use it.
//
// It works without systemd on the host: containers are started with
// --register=no (no machined) and --keep-unit (no scope unit), and
// commands enter the container's namespaces with nsenter(1) on its PID 1.
package nspawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrMissingTool is matched (errors.Is) when systemd-nspawn or nsenter is
// not installed.
var ErrMissingTool = errors.New("nspawn: systemd-nspawn or nsenter not found (apt-get install systemd-container util-linux)")

// Bind is a bind mount into the container.
type Bind struct {
	// Host is the path on the host, Container where it appears ("" = the
	// same path).
	Host, Container string
	// ReadOnly binds it read-only.
	ReadOnly bool
}

// FUSEBinds gives a container the host's /dev/fuse, when the host has
// one, so that a daemon inside can mount a FUSE filesystem (vprocd's
// /cluster/proc); none otherwise.
func FUSEBinds() []Bind {
	if fi, err := os.Stat("/dev/fuse"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return []Bind{{Host: "/dev/fuse", Container: "/dev/fuse"}}
}

func (b Bind) arg() string {
	flag := "--bind="
	if b.ReadOnly {
		flag = "--bind-ro="
	}
	if b.Container == "" {
		return flag + b.Host
	}
	return flag + b.Host + ":" + b.Container
}

// Options describe a container.
type Options struct {
	// Dir is its root filesystem (a copy: the container changes it).
	Dir string
	// Name is its machine name, and its hostname unless Hostname is set.
	Name string
	// Hostname, when set, is its hostname instead of Name.
	Hostname string
	// PrivateNetwork gives it a network namespace with only loopback.
	PrivateNetwork bool
	// Bridge, when set, gives it a veth pair whose host side joins this
	// existing bridge (--network-bridge); implies its own network namespace.
	Bridge string
	// Binds are bind mounts.
	Binds []Bind
	// Env is added to systemd-nspawn's environment ("KEY=value"), e.g.
	// SYSTEMD_SECCOMP=0, which boots the container without nspawn's
	// system-call filter.
	Env []string
	// Args are extra systemd-nspawn arguments.
	Args []string
	// Log receives the container's console (nil = discarded).
	Log *os.File
}

func (o Options) args(boot bool) []string {
	a := []string{"--quiet", "-D", o.Dir, "--register=no", "--keep-unit"}
	if o.Name != "" {
		a = append(a, "--machine="+o.Name)
	}
	if o.Hostname != "" {
		a = append(a, "--hostname="+o.Hostname)
	}
	if boot {
		a = append(a, "--boot")
	}
	switch {
	case o.Bridge != "":
		a = append(a, "--network-bridge="+o.Bridge)
	case o.PrivateNetwork:
		a = append(a, "--private-network")
	}
	for _, b := range o.Binds {
		a = append(a, b.arg())
	}
	return append(a, o.Args...)
}

func tools() error {
	for _, t := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(t); err != nil {
			return ErrMissingTool
		}
	}
	return nil
}

// Run runs one command in a container of o that is not booted (no
// systemd inside: like a chroot with /proc, /dev and /run set up), and
// returns its output (stdout, then stderr; systemd-nspawn's own messages
// are left out).
func Run(ctx context.Context, o Options, args ...string) ([]byte, error) {
	if err := tools(); err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = filepath.Base(o.Dir)
	}
	defer os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", o.Name))
	// The command's stderr joins its stdout inside the container, so that
	// nspawn's own stderr stays apart.
	inner := append([]string{"/bin/sh", "-c", `exec "$@" 2>&1`, "sh"}, args...)
	a := append(o.args(false), "--pipe", "--setenv=DEBIAN_FRONTEND=noninteractive", "--")
	cmd := exec.CommandContext(ctx, "systemd-nspawn", append(a, inner...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("nspawn: run %q in %s: %w: %s%s", strings.Join(args, " "), o.Dir, err, out, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Container is a booted container.
type Container struct {
	opts   Options
	cmd    *exec.Cmd // nil for a container found with Attach
	nspawn int       // host PID of systemd-nspawn
	pid1   int       // host PID of the container's init
	done   chan struct{}
	mu     sync.Mutex
	err    error // of systemd-nspawn, once done
}

// Boot starts systemd in a container of o and returns once its PID 1
// exists (use WaitSystemRunning to wait for the boot to finish).
func Boot(ctx context.Context, o Options) (*Container, error) {
	if err := tools(); err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = filepath.Base(o.Dir)
	}
	// A container killed earlier leaves its propagation directory behind,
	// which makes the next boot of the same name fail.
	_ = os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", o.Name))
	// systemd takes the hostname from /etc/hostname over nspawn's.
	hostname := o.Name
	if o.Hostname != "" {
		hostname = o.Hostname
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "etc/hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("nspawn: boot %s: %w", o.Name, err)
	}
	cmd := exec.Command("systemd-nspawn", o.args(true)...)
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	if o.Log != nil {
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
	}
	// Its own process group, so that a signal to the caller's group does
	// not reach it, and no controlling terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nspawn: boot %s: %w", o.Name, err)
	}
	c := &Container{opts: o, cmd: cmd, nspawn: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	}()
	for {
		if pid, ok := containerInit(cmd.Process.Pid); ok {
			c.pid1 = pid
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("nspawn: boot %s: systemd-nspawn exited: %v", o.Name, c.exitErr())
		case <-ctx.Done():
			c.Kill()
			return nil, fmt.Errorf("nspawn: boot %s: %w", o.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Container) exitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// containerInit finds the descendant of nspawn that is PID 1 of a new PID
// namespace.
func containerInit(nspawnPID int) (int, bool) {
	queue := []int{nspawnPID}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, child := range children(p) {
			if nsPID1(child) {
				return child, true
			}
			queue = append(queue, child)
		}
	}
	return 0, false
}

func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// nsPID1 reports whether pid is 1 in its innermost PID namespace and
// already runs in the container's filesystem (not the forked nspawn).
func nsPID1(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "NSpid:") {
			f := strings.Fields(line)
			return len(f) > 2 && f[len(f)-1] == "1"
		}
	}
	return false
}

// Attach returns the container that the systemd-nspawn process nspawnPID
// runs, booted earlier with o by this or another process (the lab command
// boots a node in one invocation and kills it in the next).
func Attach(o Options, nspawnPID int) (*Container, error) {
	if o.Name == "" {
		o.Name = filepath.Base(o.Dir)
	}
	if !Alive(nspawnPID) {
		return nil, fmt.Errorf("nspawn: %s is not running", o.Name)
	}
	pid1, ok := containerInit(nspawnPID)
	if !ok {
		return nil, fmt.Errorf("nspawn: %s: systemd-nspawn %d runs no container", o.Name, nspawnPID)
	}
	return &Container{opts: o, nspawn: nspawnPID, pid1: pid1}, nil
}

// Alive reports whether pid is a live (not zombie) process.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return !(i >= 0 && i+2 < len(b) && b[i+2] == 'Z')
}

// Running reports whether the container still runs.
func (c *Container) Running() bool {
	if c.cmd == nil {
		return Alive(c.pid1)
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// NspawnPID is the host PID of systemd-nspawn (recorded to Attach later).
func (c *Container) NspawnPID() int { return c.nspawn }

// Name is the container's machine name.
func (c *Container) Name() string { return c.opts.Name }

// Dir is the container's root filesystem on the host.
func (c *Container) Dir() string { return c.opts.Dir }

// PID is the host PID of the container's init.
func (c *Container) PID() int { return c.pid1 }

// Done is closed when systemd-nspawn has exited (nil, never closed, for an
// attached container: use Running).
func (c *Container) Done() <-chan struct{} { return c.done }

// Command returns a command that runs args inside the container (all its
// namespaces, its root, a clean environment).
func (c *Container) Command(ctx context.Context, args ...string) *exec.Cmd {
	return c.CommandEnv(ctx, nil, args...)
}

// CommandEnv is Command with env ("KEY=value") added to the clean
// environment. The values are passed in nsenter's environment, never on a
// command line, so that a secret (an ACL token) is not shown to the
// container's other users.
func (c *Container) CommandEnv(ctx context.Context, env []string, args ...string) *exec.Cmd {
	a := []string{"--target", strconv.Itoa(c.pid1), "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd", "--"}
	cmd := exec.CommandContext(ctx, "nsenter", append(a, args...)...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive", "HOME=/root", "TERM=dumb", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}, env...)
	return cmd
}

// Exec runs args in the container and returns stdout and stderr combined;
// a non-zero exit is an error that carries the output.
func (c *Container) Exec(ctx context.Context, args ...string) (string, error) {
	if !c.Running() {
		return "", fmt.Errorf("nspawn: %s: container is not running", c.opts.Name)
	}
	var out bytes.Buffer
	cmd := c.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("nspawn: %s: %q: %w: %s", c.opts.Name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// WaitSystemRunning waits until systemd in the container has finished
// booting and returns its state: "running", or "degraded" (the error then
// names the failed units).
func (c *Container) WaitSystemRunning(ctx context.Context) (string, error) {
	for {
		out, _ := c.Exec(ctx, "systemctl", "is-system-running")
		state := strings.TrimSpace(out)
		switch state {
		case "running":
			return state, nil
		case "degraded":
			failed, _ := c.Exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
			return state, fmt.Errorf("nspawn: %s booted degraded: %s", c.opts.Name, strings.TrimSpace(failed))
		}
		select {
		case <-ctx.Done():
			return state, fmt.Errorf("nspawn: %s: waiting for the boot (state %q): %w", c.opts.Name, state, ctx.Err())
		case <-c.done:
			return state, fmt.Errorf("nspawn: %s: container ended while booting: %v", c.opts.Name, c.exitErr())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kill ends the container at once, like pulling its power: SIGKILL to its
// PID 1 kills every process of its PID namespace, then systemd-nspawn.
func (c *Container) Kill() {
	if c.pid1 > 0 {
		_ = syscall.Kill(c.pid1, syscall.SIGKILL)
	}
	if c.cmd == nil { // attached: not our child, poll for its end
		deadline := time.Now().Add(5 * time.Second)
		for Alive(c.nspawn) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if Alive(c.nspawn) {
			_ = syscall.Kill(c.nspawn, syscall.SIGKILL)
			for i := 0; i < 100 && Alive(c.nspawn); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", c.opts.Name))
		return
	}
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	_ = os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", c.opts.Name))
}

// Stop shuts the container down cleanly (SIGRTMIN+4 to its systemd, a
// poweroff) and waits for it; when ctx ends first it kills it.
func (c *Container) Stop(ctx context.Context) error {
	if c.cmd == nil { // attached
		_ = syscall.Kill(c.pid1, syscall.Signal(34+4))
		for Alive(c.nspawn) {
			select {
			case <-ctx.Done():
				c.Kill()
				return fmt.Errorf("nspawn: %s: stop: %w (killed)", c.opts.Name, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	}
	select {
	case <-c.done:
		return nil
	default:
	}
	// SIGRTMIN+4 asks systemd for a poweroff.
	_ = syscall.Kill(c.pid1, syscall.Signal(34+4))
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.Kill()
		return fmt.Errorf("nspawn: %s: stop: %w (killed)", c.opts.Name, ctx.Err())
	}
}

// MemoryPSS sums the proportional set size of every process in the
// container's PID namespace, in KiB (shared pages are split among their
// users, so containers' figures add up).
func (c *Container) MemoryPSS() (int64, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.pid1))
	if err != nil {
		return 0, fmt.Errorf("nspawn: %s: %w", c.opts.Name, err)
	}
	var total int64
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + p.Name() + "/ns/pid"); err != nil || l != ns {
			continue
		}
		b, err := os.ReadFile("/proc/" + p.Name() + "/smaps_rollup")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				total += kb
			}
		}
	}
	return total, nil
}
