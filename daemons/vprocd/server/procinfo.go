package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procRoot is where the kernel's process table is read (tests point it
// nowhere else; it is a variable only to say where it comes from).
const procRoot = "/proc"

// errNoProcess: no process has that pid (or it is a zombie that may no
// longer be signaled meaningfully).
var errNoProcess = errors.New("no such process")

// procStat is what vprocd reads of one process before acting on it.
type procStat struct {
	// uid is the real uid: the owner a signal or renice is checked
	// against.
	uid  uint32
	pgrp int32
	nice int
	// tty is its controlling terminal (tty_nr), 0 for none.
	tty int
	// start is its start time (clock ticks after boot): with its pid,
	// it names the process for good.
	start uint64
}

// readProc reads pid's real uid, process group and nice value.
func readProc(pid int32) (procStat, error) {
	var st procStat
	dir := procRoot + "/" + strconv.Itoa(int(pid))
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return st, errNoProcess
	}
	found := false
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			u, err := strconv.ParseUint(f[0], 10, 32)
			if err != nil {
				break
			}
			st.uid, found = uint32(u), true
			break
		}
	}
	if !found {
		return st, fmt.Errorf("vproc: %s/status has no Uid line", dir)
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return st, errNoProcess
	}
	// The command name, in parentheses, may hold anything: the fields
	// start after its last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return st, fmt.Errorf("vproc: %s/stat: no command name", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[4] field 7
	// (tty_nr), f[16] field 19 (nice), f[19] field 22 (starttime).
	if len(f) < 20 {
		return st, fmt.Errorf("vproc: %s/stat: %d fields", dir, len(f)+2)
	}
	if f[0] == "Z" || f[0] == "X" {
		return st, errNoProcess
	}
	pg, err1 := strconv.ParseInt(f[2], 10, 32)
	nice, err2 := strconv.Atoi(f[16])
	tty, err3 := strconv.Atoi(f[4])
	start, err4 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return st, fmt.Errorf("vproc: %s/stat: bad pgrp, tty, nice or start time", dir)
	}
	st.pgrp, st.nice, st.tty, st.start = int32(pg), nice, tty, start
	return st, nil
}

// groupPIDs lists the live processes of process group pgid on this node.
func groupPIDs(pgid int32) []int32 {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []int32
	for _, e := range ents {
		pid, err := strconv.ParseInt(e.Name(), 10, 32)
		if err != nil || pid < 1 {
			continue
		}
		if st, err := readProc(int32(pid)); err == nil && st.pgrp == pgid {
			out = append(out, int32(pid))
		}
	}
	return out
}

// pidHandle holds a process by a pidfd so that what is checked is what
// is acted on: a pid reused after the check gets nothing.
type pidHandle struct {
	pid int32
	fd  int
	st  procStat
}

// openProc opens pid and reads it (after opening, so the owner read is
// the held process's or, if pid was reused in between, the signal fails).
func openProc(pid int32) (*pidHandle, error) {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, errNoProcess
		}
		return nil, fmt.Errorf("vproc: pidfd of %d: %w", pid, err)
	}
	st, err := readProc(pid)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &pidHandle{pid: pid, fd: fd, st: st}, nil
}

func (h *pidHandle) close() { unix.Close(h.fd) }

// signal sends sig to the held process (0 checks that it lives).
func (h *pidHandle) signal(sig syscall.Signal) error {
	err := unix.PidfdSendSignal(h.fd, sig, nil, 0)
	if errors.Is(err, syscall.ESRCH) {
		return errNoProcess
	}
	return err
}
