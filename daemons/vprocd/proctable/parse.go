package proctable

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/proctext"
)

// Stat is what a Row needs of /proc/<pid>/stat.
type Stat struct {
	PID  int32
	Comm string
	// State is the one-letter state: R S D Z T t X I...
	State   byte
	PPID    int32
	PGrp    int32
	Session int32
	// TTY is tty_nr; TPGid the terminal's foreground process group
	// (-1 without a terminal).
	TTY   int32
	TPGid int32
	// Flags is the kernel's PF_* flags; PFKthread marks a kernel thread.
	Flags uint32
	// UTime and STime are the CPU time used, in clock ticks.
	UTime, STime uint64
	Nice         int32
	Threads      int32
	// StartTime is when the process started, in clock ticks since boot.
	StartTime uint64
}

// PFKthread is the kernel's PF_KTHREAD flag: the task is a kernel thread.
const PFKthread = 0x00200000

// maxComm bounds the comm field: the kernel's TASK_COMM_LEN is 16 (15
// bytes and a NUL); 64 leaves room for a kernel that raises it.
const maxComm = 64

// ParseStat reads the one line of /proc/<pid>/stat:
// "2743 (cat) R 2741 2741 32408 0 -1 4194304 ...". The comm field may
// hold spaces and parentheses (a process names itself), so it is taken
// from the first '(' to the LAST ')', as procps does.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Stat{}, errors.New("proctable: stat has no (comm)")
	}
	var s Stat
	pid, err := strconv.ParseInt(string(bytes.TrimSpace(b[:open])), 10, 32)
	if err != nil || pid < 1 {
		return Stat{}, fmt.Errorf("proctable: stat pid %q is not a pid", proctext.Clip(b[:open]))
	}
	s.PID = int32(pid)
	if closing-open-1 > maxComm {
		return Stat{}, fmt.Errorf("proctable: stat comm is %d bytes, more than %d", closing-open-1, maxComm)
	}
	s.Comm = string(b[open+1 : closing])
	f := bytes.Fields(b[closing+1:])
	// f[0] is field 3 (state); field n is f[n-3]. Up to starttime (22).
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("proctable: stat has %d fields after comm, want at least 20", len(f))
	}
	if len(f[0]) != 1 || f[0][0] < 'A' || f[0][0] > 'z' {
		return Stat{}, fmt.Errorf("proctable: stat state %q is not a letter", proctext.Clip(f[0]))
	}
	s.State = f[0][0]
	ints := []struct {
		field int
		p     *int32
		min   int64
	}{
		{4, &s.PPID, 0}, {5, &s.PGrp, 0}, {6, &s.Session, 0}, {7, &s.TTY, -1 << 31},
		{8, &s.TPGid, -1}, {19, &s.Nice, -20}, {20, &s.Threads, 0},
	}
	for _, i := range ints {
		v, err := strconv.ParseInt(string(f[i.field-3]), 10, 32)
		if err != nil || v < i.min {
			return Stat{}, fmt.Errorf("proctable: stat field %d %q is out of range", i.field, proctext.Clip(f[i.field-3]))
		}
		*i.p = int32(v)
	}
	if s.Nice > 19 {
		return Stat{}, fmt.Errorf("proctable: stat nice %d is out of range -20..19", s.Nice)
	}
	flags, err := strconv.ParseUint(string(f[9-3]), 10, 32)
	if err != nil {
		return Stat{}, fmt.Errorf("proctable: stat flags %q are not a number", proctext.Clip(f[9-3]))
	}
	s.Flags = uint32(flags)
	for _, u := range []struct {
		field int
		p     *uint64
	}{{14, &s.UTime}, {15, &s.STime}, {22, &s.StartTime}} {
		v, err := strconv.ParseUint(string(f[u.field-3]), 10, 64)
		if err != nil || v > maxTicks {
			return Stat{}, fmt.Errorf("proctable: stat field %d %q is not a tick count", u.field, proctext.Clip(f[u.field-3]))
		}
		*u.p = v
	}
	return s, nil
}

// maxTicks bounds a tick count read from outside: 2^40 ticks at 100 Hz is
// 348 years, and two of them times 1e9/HZ fit a time.Duration.
const maxTicks = 1 << 40

// Status is what a Row needs of /proc/<pid>/status.
type Status struct {
	// UID and GID are the effective ids (the second of the four
	// numbers), which ps shows as USER.
	UID, GID uint32
	// RSS and Locked are VmRSS and VmLck in KiB; 0 when absent (a
	// kernel thread, a zombie).
	RSS, Locked uint64
}

// ParseStatus reads /proc/<pid>/status ("Uid:\t1000\t1000\t1000\t1000").
// It needs the Uid and Gid lines.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	var haveUID, haveGID bool
	for line := range bytes.Lines(b) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(name) {
		case "Uid", "Gid":
			f := bytes.Fields(rest)
			if len(f) != 4 {
				return Status{}, fmt.Errorf("proctable: status %s line has %d ids, want 4", name, len(f))
			}
			v, err := strconv.ParseUint(string(f[1]), 10, 32)
			if err != nil {
				return Status{}, fmt.Errorf("proctable: status %s %q is not an id", name, proctext.Clip(f[1]))
			}
			if name[0] == 'U' {
				s.UID, haveUID = uint32(v), true
			} else {
				s.GID, haveGID = uint32(v), true
			}
		case "VmRSS", "VmLck":
			v, err := proctext.ParseKB(rest)
			if err != nil {
				return Status{}, fmt.Errorf("proctable: status %s %w", name, err)
			}
			if name[2] == 'R' {
				s.RSS = v
			} else {
				s.Locked = v
			}
		}
	}
	if !haveUID || !haveGID {
		return Status{}, errors.New("proctable: status lacks a Uid or Gid line")
	}
	return s, nil
}

// ParseCmdline splits /proc/<pid>/cmdline, NUL-separated arguments each
// ended by a NUL, into argv. Empty (a kernel thread, a zombie) is nil. A
// process that rewrote its argv may leave no final NUL, or one string with
// spaces; the text is kept as it is.
func ParseCmdline(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	b = bytes.TrimSuffix(b, []byte{0})
	args := make([]string, 0, bytes.Count(b, []byte{0})+1)
	for a := range bytes.SplitSeq(b, []byte{0}) {
		args = append(args, string(a))
	}
	return args
}

// ParseBtime reads the boot time from /proc/stat's "btime 1795968787".
func ParseBtime(b []byte) (time.Time, error) {
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) != "btime" {
			continue
		}
		if len(f) != 2 {
			return time.Time{}, fmt.Errorf("proctable: /proc/stat btime line has %d fields, want 2", len(f))
		}
		v, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil || v < 0 || v > 1<<40 {
			return time.Time{}, fmt.Errorf("proctable: /proc/stat btime %q is not a time", proctext.Clip(f[1]))
		}
		return time.Unix(v, 0).UTC(), nil
	}
	return time.Time{}, errors.New("proctable: /proc/stat has no btime line")
}

// ParseUptime reads the first figure of /proc/uptime ("12048.45
// 11356.85"): the time since boot, a monotonic clock. Its whole seconds
// have at most 9 digits (31 years), so the Duration cannot overflow.
func ParseUptime(b []byte) (time.Duration, error) {
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, errors.New("proctable: /proc/uptime is empty")
	}
	sec, frac, _ := bytes.Cut(f[0], []byte("."))
	if len(sec) == 0 || len(sec) > 9 || len(frac) > 9 || !proctext.AllDigits(sec) || !proctext.AllDigits(frac) {
		return 0, fmt.Errorf("proctable: /proc/uptime %q is not a number of seconds", proctext.Clip(f[0]))
	}
	s, _ := strconv.ParseInt(string(sec), 10, 64)
	d := time.Duration(s) * time.Second
	if len(frac) > 0 {
		ns, _ := strconv.ParseInt(string(frac), 10, 64)
		for i := len(frac); i < 9; i++ {
			ns *= 10
		}
		d += time.Duration(ns)
	}
	return d, nil
}
