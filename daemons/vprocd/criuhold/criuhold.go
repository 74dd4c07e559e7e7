// Package criuhold is the holder of a program that CRIU restores on the
// node it moved to. vprocd starts its own binary (/proc/self/exe) under
// the name Name as the first process of a fresh PID namespace and a mount
// namespace of its own (so that no PID the program had is ever taken
// there: a restore into the host's namespace fails while its old PID is
// in use); the holder mounts that namespace's /proc, runs
// `criu restore --restore-detached` with the descriptors vprocd gave it
// (the program's new stdio pipes, which criu plugs in with --inherit-fd),
// reports the restored program's PID in the namespace, then reaps it as
// its parent (a detached restore leaves it to the namespace's first
// process) and reports how it ended. When the holder ends, the kernel
// ends whatever else still runs in the namespace.
//
// Its reports are lines on descriptor StatusFD:
//
//	pid N        the program is restored (stopped, with --leave-stopped), PID N in the namespace
//	exit W       it ended, W its wait status (decimal)
//	fail REASON  the restore failed; the holder exits 1
//
// The holder runs in this package's init, in any binary that links it
// (vprocd through package server, server's tests).
package criuhold

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Name is argv[0] of a holder.
const Name = "openssi-vproc-criu-hold"

// StatusFD is the descriptor of the holder's reports; the descriptors
// after it are passed on to criu as they are.
const StatusFD = 3

func init() {
	if len(os.Args) >= 4 && os.Args[0] == Name {
		os.Exit(run(os.Args[1], os.Args[2], os.Args[3:]))
	}
}

// Args returns the arguments of a holder (after Name) that runs criu with
// criuArgs, passing on inherited descriptors StatusFD+1 ..
// StatusFD+inherited, and reads the program's PID from pidfile.
func Args(pidfile string, inherited int, criuArgs []string) []string {
	return append([]string{pidfile, strconv.Itoa(inherited)}, criuArgs...)
}

func run(pidfile, inherited string, criu []string) int {
	status := os.NewFile(StatusFD, "status")
	say := func(format string, a ...any) { fmt.Fprintf(status, format+"\n", a...) }
	n, err := strconv.Atoi(inherited)
	if err != nil || n < 0 || n > 64 || len(criu) == 0 {
		say("fail bad arguments")
		return 1
	}
	if err := mountProc(); err != nil {
		say("fail %v", err)
		return 1
	}
	files := make([]*os.File, n+1) // ExtraFiles[0] is descriptor 3: none
	for i := 1; i <= n; i++ {
		files[i] = os.NewFile(uintptr(StatusFD+i), "inherited")
	}
	cmd := exec.Command(criu[0], criu[1:]...)
	cmd.ExtraFiles = files
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	// The program holds its stdio now: the holder keeps none of it.
	for _, f := range files[1:] {
		f.Close()
	}
	if err != nil {
		say("fail criu restore: %v: %s", err, lastLine(out.String()))
		return 1
	}
	b, err := os.ReadFile(pidfile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil || pid <= 1 {
		say("fail no restored pid in %s: %v", pidfile, err)
		return 1
	}
	say("pid %d", pid)
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			say("fail waiting for pid %d: %v", pid, err)
			return 1
		}
		if got == pid {
			say("exit %d", uint32(ws))
			return 0
		}
	}
}

// mountProc makes the mount namespace receive the host's mounts but send
// none back, and mounts the PID namespace's /proc on /proc, as criu and the
// program expect.
func mountProc() error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// lastLine is the last non-empty line of s, at most 200 bytes.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200] + "..."
	}
	return l
}
