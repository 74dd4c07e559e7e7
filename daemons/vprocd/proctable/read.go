package proctable

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// UserHZ is the kernel's USER_HZ, the clock ticks per second of
// /proc/<pid>/stat: 100 on every Linux architecture Go supports.
const UserHZ = 100

// Reader reads the processes of one node.
type Reader struct {
	// FS is rooted at /proc: os.DirFS("/proc").
	FS fs.FS
	// Node is this node's number, the high part of every cpid read.
	Node uint32
	// HZ is the clock ticks per second; 0 means UserHZ.
	HZ uint64
}

// Snapshot is one read of a node's processes.
type Snapshot struct {
	Node uint32
	// Boot is when the node booted (/proc/stat btime).
	Boot time.Time
	// Uptime is the node's /proc/uptime at the read: a monotonic clock
	// to compute TopCPU's elapsed time with.
	Uptime time.Duration
	Rows   []Row
}

// Files are the raw texts of one process, as /cluster/proc serves them.
type Files struct {
	Stat, Status, Cmdline, Environ []byte
}

func (r Reader) hz() uint64 {
	if r.HZ == 0 {
		return UserHZ
	}
	return r.HZ
}

// Gone reports whether err means the process no longer exists: its
// /proc directory vanished (ENOENT) or it exited while read (ESRCH).
func Gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// System reads the boot time and the uptime.
func (r Reader) System() (boot time.Time, uptime time.Duration, err error) {
	b, err := fs.ReadFile(r.FS, "stat")
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("proctable: %w", err)
	}
	if boot, err = ParseBtime(b); err != nil {
		return time.Time{}, 0, err
	}
	if b, err = fs.ReadFile(r.FS, "uptime"); err != nil {
		return time.Time{}, 0, fmt.Errorf("proctable: %w", err)
	}
	if uptime, err = ParseUptime(b); err != nil {
		return time.Time{}, 0, err
	}
	return boot, uptime, nil
}

// PIDs lists the numeric entries of /proc: the processes (thread group
// leaders), in the order the directory gives them.
func (r Reader) PIDs() ([]int32, error) {
	ents, err := fs.ReadDir(r.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("proctable: %w", err)
	}
	var pids []int32
	for _, e := range ents {
		p, err := strconv.ParseInt(e.Name(), 10, 32)
		if err != nil || p < 1 || p > cpid.MaxPID || !e.IsDir() || strconv.FormatInt(p, 10) != e.Name() {
			continue
		}
		pids = append(pids, int32(p))
	}
	return pids, nil
}

// Snapshot reads every process. A process that exits while it is read is
// left out; any other failure to read one is returned.
func (r Reader) Snapshot() (Snapshot, error) {
	boot, uptime, err := r.System()
	if err != nil {
		return Snapshot{}, err
	}
	pids, err := r.PIDs()
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Node: r.Node, Boot: boot, Uptime: uptime, Rows: make([]Row, 0, len(pids))}
	for _, pid := range pids {
		row, err := r.Row(pid, boot, uptime)
		if Gone(err) {
			continue
		}
		if err != nil {
			return Snapshot{}, err
		}
		s.Rows = append(s.Rows, row)
	}
	return s, nil
}

// Row reads process pid, with the node's boot time and uptime from System.
// Its error satisfies Gone when the process no longer exists.
func (r Reader) Row(pid int32, boot time.Time, uptime time.Duration) (Row, error) {
	c, err := cpid.Make(r.Node, pid)
	if err != nil {
		return Row{}, fmt.Errorf("proctable: %w", err)
	}
	dir := strconv.FormatInt(int64(pid), 10)
	read := func(name string) ([]byte, error) {
		b, err := fs.ReadFile(r.FS, dir+"/"+name)
		if err != nil {
			return nil, fmt.Errorf("proctable: %w", err)
		}
		return b, nil
	}
	statText, err := read("stat")
	if err != nil {
		return Row{}, err
	}
	st, err := ParseStat(statText)
	if err != nil {
		return Row{}, fmt.Errorf("%w (pid %d)", err, pid)
	}
	if st.PID != pid {
		return Row{}, fmt.Errorf("proctable: %s/stat is of pid %d", dir, st.PID)
	}
	statusText, err := read("status")
	if err != nil {
		return Row{}, err
	}
	status, err := ParseStatus(statusText)
	if err != nil {
		return Row{}, fmt.Errorf("%w (pid %d)", err, pid)
	}
	cmdline, err := read("cmdline")
	if err != nil {
		return Row{}, err
	}
	hz := r.hz()
	started := ticks(st.StartTime, hz)
	row := Row{
		CPID:    c,
		Node:    r.Node,
		PID:     pid,
		UID:     status.UID,
		GID:     status.GID,
		Stat:    StatLetters(st, status.Locked),
		RSS:     status.RSS,
		Start:   boot.Add(started),
		CPUTime: ticks(st.UTime, hz) + ticks(st.STime, hz),
		Nice:    st.Nice,
		Comm:    st.Comm,
		Args:    ParseCmdline(cmdline),
		Kernel:  st.Flags&PFKthread != 0,
	}
	if row.CPUTime < 0 { // the sum of two saturated durations
		row.CPUTime = 1<<63 - 1
	}
	if st.PPID > 0 {
		if row.PPID, err = cpid.Make(r.Node, st.PPID); err != nil {
			return Row{}, fmt.Errorf("proctable: pid %d's parent: %w", pid, err)
		}
	}
	row.CPU = LifetimeCPU(row.CPUTime, uptime-started)
	return row, nil
}

// Files reads the raw stat, status, cmdline and environ of process pid.
// Its error satisfies Gone when the process no longer exists.
func (r Reader) Files(pid int32) (Files, error) {
	if pid < 1 || pid > cpid.MaxPID {
		return Files{}, fmt.Errorf("proctable: pid %d is out of range: %w", pid, fs.ErrNotExist)
	}
	dir := strconv.FormatInt(int64(pid), 10)
	var f Files
	for _, x := range []struct {
		name string
		p    *[]byte
	}{{"stat", &f.Stat}, {"status", &f.Status}, {"cmdline", &f.Cmdline}, {"environ", &f.Environ}} {
		b, err := fs.ReadFile(r.FS, dir+"/"+x.name)
		if err != nil {
			return Files{}, fmt.Errorf("proctable: %w", err)
		}
		*x.p = b
	}
	return f, nil
}

// Runnable counts the tasks (threads) in state R of the processes /proc
// lists: the run queue of this PID namespace, where /proc/stat's
// procs_running counts every task of the kernel (in a container, the
// neighbours' too). A task or process that exits while it is read is
// left out.
func (r Reader) Runnable() (uint32, error) {
	var n uint32
	err := r.eachTask("stat", func(_ int32, b []byte) error {
		st, err := ParseStat(b)
		if err != nil {
			return err
		}
		if st.State == 'R' {
			n++
		}
		return nil
	})
	return n, err
}

// eachTask calls f with the text of file of every task (thread) of the
// processes /proc lists, and its thread id; a task or process that exits
// while it is read is left out.
func (r Reader) eachTask(file string, f func(tid int32, b []byte) error) error {
	pids, err := r.PIDs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		dir := strconv.FormatInt(int64(pid), 10) + "/task"
		tasks, err := fs.ReadDir(r.FS, dir)
		if Gone(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("proctable: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.ParseInt(t.Name(), 10, 32)
			if err != nil || tid <= 0 {
				continue
			}
			b, err := fs.ReadFile(r.FS, dir+"/"+t.Name()+"/"+file)
			if Gone(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("proctable: %w", err)
			}
			if err := f(int32(tid), b); err != nil {
				return fmt.Errorf("%w (%s/%s)", err, dir, t.Name())
			}
		}
	}
	return nil
}
