package load

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/proctext"
)

// Loadavg is what /proc/loadavg says.
type Loadavg struct {
	Load1, Load5, Load15 float64
	// Running and Total are the runnable and all scheduling entities
	// ("2/1234").
	Running, Total uint32
}

// maxLoad bounds a load average read from outside (a real one is far
// lower; beyond this the text is not a load average).
const maxLoad = 1e6

// ParseLoadavg reads the text of /proc/loadavg:
// "0.52 0.58 0.59 2/1234 5678".
func ParseLoadavg(b []byte) (Loadavg, error) {
	f := bytes.Fields(b)
	if len(f) < 4 {
		return Loadavg{}, fmt.Errorf("load: /proc/loadavg has %d fields, want 5", len(f))
	}
	var l Loadavg
	for i, p := range []*float64{&l.Load1, &l.Load5, &l.Load15} {
		v, err := strconv.ParseFloat(string(f[i]), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > maxLoad {
			return Loadavg{}, fmt.Errorf("load: /proc/loadavg field %d %q is not a load average", i+1, proctext.Clip(f[i]))
		}
		*p = v
	}
	run, total, ok := bytes.Cut(f[3], []byte("/"))
	if !ok {
		return Loadavg{}, fmt.Errorf("load: /proc/loadavg field 4 %q is not running/total", proctext.Clip(f[3]))
	}
	var err error
	if l.Running, err = parseU32(run); err != nil {
		return Loadavg{}, fmt.Errorf("load: /proc/loadavg running count: %w", err)
	}
	if l.Total, err = parseU32(total); err != nil {
		return Loadavg{}, fmt.Errorf("load: /proc/loadavg total count: %w", err)
	}
	return l, nil
}

// Stat is what vprocd reads of /proc/stat.
type Stat struct {
	// ProcsRunning is the procs_running line: tasks runnable now,
	// including the one reading the file.
	ProcsRunning uint32
	// CPUs counts the "cpuN" lines: the CPUs online.
	CPUs uint32
}

// ParseStat reads the text of /proc/stat. It needs a procs_running line;
// CPUs is 0 when no cpuN line is there.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	found := false
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch k := f[0]; {
		case string(k) == "procs_running":
			if len(f) != 2 {
				return Stat{}, fmt.Errorf("load: /proc/stat procs_running line has %d fields, want 2", len(f))
			}
			v, err := parseU32(f[1])
			if err != nil {
				return Stat{}, fmt.Errorf("load: /proc/stat procs_running: %w", err)
			}
			s.ProcsRunning, found = v, true
		case len(k) > 3 && string(k[:3]) == "cpu" && proctext.AllDigits(k[3:]):
			if s.CPUs < math.MaxUint32 {
				s.CPUs++
			}
		}
	}
	if !found {
		return Stat{}, errors.New("load: /proc/stat has no procs_running line")
	}
	return s, nil
}

// Meminfo is what vprocd reads of /proc/meminfo, in bytes.
type Meminfo struct {
	Total uint64
	// Available is MemAvailable, or on kernels without it MemFree +
	// Buffers + Cached.
	Available uint64
}

// ParseMeminfo reads the text of /proc/meminfo ("MemTotal:  24684092 kB").
// It needs MemTotal and either MemAvailable or MemFree.
func ParseMeminfo(b []byte) (Meminfo, error) {
	vals := map[string]uint64{}
	for line := range bytes.Lines(b) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch n := string(name); n {
		case "MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached":
			v, err := parseKB(rest)
			if err != nil {
				return Meminfo{}, fmt.Errorf("load: /proc/meminfo %s: %w", n, err)
			}
			vals[n] = v
		}
	}
	total, ok := vals["MemTotal"]
	if !ok {
		return Meminfo{}, errors.New("load: /proc/meminfo has no MemTotal line")
	}
	m := Meminfo{Total: total}
	if avail, ok := vals["MemAvailable"]; ok {
		m.Available = avail
	} else if free, ok := vals["MemFree"]; ok {
		m.Available = free + vals["Buffers"] + vals["Cached"] // each < 2^60: no overflow
	} else {
		return Meminfo{}, errors.New("load: /proc/meminfo has neither MemAvailable nor MemFree")
	}
	return m, nil
}

// Measure makes this node's Vector from the texts of /proc/loadavg,
// /proc/stat and /proc/meminfo read at time at. RunQueue is procs_running
// less the measuring process itself; CPUs is at least 1.
func Measure(node uint32, at time.Time, loadavg, stat, meminfo []byte) (Vector, error) {
	l, err := ParseLoadavg(loadavg)
	if err != nil {
		return Vector{}, err
	}
	s, err := ParseStat(stat)
	if err != nil {
		return Vector{}, err
	}
	m, err := ParseMeminfo(meminfo)
	if err != nil {
		return Vector{}, err
	}
	v := Vector{Node: node, RunQueue: s.ProcsRunning, Load1: l.Load1, CPUs: max(s.CPUs, 1), FreeMem: m.Available, At: at}
	if v.RunQueue > 0 {
		v.RunQueue--
	}
	return v, nil
}

func parseU32(b []byte) (uint32, error) {
	if !proctext.AllDigits(b) || len(b) == 0 {
		return 0, fmt.Errorf("%q is not a count", proctext.Clip(b))
	}
	v, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", proctext.Clip(b))
	}
	return uint32(v), nil
}

// parseKB reads " 24684092 kB" into bytes.
func parseKB(b []byte) (uint64, error) {
	v, err := proctext.ParseKB(b)
	return v * 1024, err
}
