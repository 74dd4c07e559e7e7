package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Down removes everything the lab made: containers, overlay mounts, node
// disks, links, the bridge and the state file. It works from the state
// file and, for what a crashed lab command did not record, from the naming
// prefix, and it is idempotent.
func (l *Lab) Down(ctx context.Context) error {
	var errs []error
	machinePrefix := l.opts.Prefix + "-node"
	// Containers: those recorded and any other of ours still running.
	pids := map[int]bool{}
	if s := l.State(); s != nil {
		for _, n := range s.Nodes {
			if alive(n.PID) {
				pids[n.PID] = true
			}
		}
	}
	for _, pid := range nspawnsByMachinePrefix(machinePrefix) {
		pids[pid] = true
	}
	if len(pids) > 0 {
		l.progress("stopping %d containers", len(pids))
	}
	for pid := range pids {
		if err := killContainer(pid); err != nil {
			errs = append(errs, err)
		}
	}
	// The server of a bare lab, when the lab command started one.
	if s := l.State(); s != nil && s.ServerPID != 0 {
		if err := stopServer(s.ServerPID, l.opts.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	// Mounts under the lab directory, deepest first.
	mounts, err := mountsUnder(l.opts.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mounts {
		if err := syscall.Unmount(m, 0); err != nil {
			if err2 := syscall.Unmount(m, syscall.MNT_DETACH); err2 != nil {
				errs = append(errs, fmt.Errorf("lab: unmount %s: %w", m, err))
			}
		}
	}
	// Links: veths left behind and the bridge.
	for _, name := range linksWithPrefix("vb-" + machinePrefix) {
		_ = ip("link", "del", name)
	}
	if br := l.opts.Prefix + "br0"; linkExists(br) {
		l.progress("removing bridge %s", br)
		if err := ip("link", "del", br); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Disks and state, only when nothing is mounted any more.
	entries, _ := os.ReadDir(l.opts.Dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "node") || e.Name() == "state.json" || e.Name() == "state.json.tmp" || e.Name() == "ssh" || e.Name() == ServeLog {
			if err := os.RemoveAll(filepath.Join(l.opts.Dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	l.mu.Lock()
	l.state = nil
	l.mu.Unlock()
	return errors.Join(errs...)
}

// stopServer ends the lab server pid, if it is still the `lab serve` of
// the lab in dir (a recycled pid is left alone).
func stopServer(pid int, dir string) error {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil // gone
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if !ServerCommand(args, dir) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("lab: stop the lab server %d: %w", pid, err)
	}
	return nil
}

// nspawnsByMachinePrefix finds systemd-nspawn processes running one of our
// machines.
func nspawnsByMachinePrefix(prefix string) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "systemd-nspawn" {
			continue
		}
		for _, a := range args {
			if strings.HasPrefix(a, "--machine="+prefix) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		mp := strings.ReplaceAll(fields[1], `\040`, " ")
		if strings.HasPrefix(mp, abs+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, sc.Err()
}

func linksWithPrefix(prefix string) []string {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names
}
