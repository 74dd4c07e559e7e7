package proctable

import (
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/proctext"
)

// ParseSchedstat reads /proc/<pid>/task/<tid>/schedstat: "241600415
// 125445896 2038", the nanoseconds the task ran, the nanoseconds it waited
// runnable for a CPU, and its timeslices.
func ParseSchedstat(b []byte) (run, wait time.Duration, err error) {
	f := bytes.Fields(b)
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("proctable: schedstat has %d fields, want 3", len(f))
	}
	var v [2]int64
	for i := range v {
		v[i], err = strconv.ParseInt(string(f[i]), 10, 64)
		if err != nil || v[i] < 0 || !proctext.AllDigits(f[i]) {
			return 0, 0, fmt.Errorf("proctable: schedstat field %d %q is not a count of nanoseconds", i+1, proctext.Clip(f[i]))
		}
	}
	return time.Duration(v[0]), time.Duration(v[1]), nil
}

// Busy reads how long process pid's tasks ran or waited runnable for a
// CPU, the sum of their schedstat (what the process added to the run
// queue over its life, as long as no task of it ended), and its start
// time in clock ticks after boot (another process under the pid has
// another). Where the kernel keeps no schedstat it is the CPU time of
// /proc/<pid>/stat, in which ended threads are counted too.
func (r Reader) Busy(pid int32) (start uint64, busy time.Duration, err error) {
	dir := strconv.FormatInt(int64(pid), 10)
	b, err := fs.ReadFile(r.FS, dir+"/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("proctable: %w", err)
	}
	st, err := ParseStat(b)
	if err != nil {
		return 0, 0, err
	}
	tasks, err := fs.ReadDir(r.FS, dir+"/task")
	if err != nil {
		return 0, 0, fmt.Errorf("proctable: %w", err)
	}
	for _, t := range tasks {
		b, err := fs.ReadFile(r.FS, dir+"/task/"+t.Name()+"/schedstat")
		switch {
		case Gone(err) && len(tasks) > 1:
			continue // a thread that ended while read
		case Gone(err):
			// No schedstat in this kernel, or the process ended.
			return st.StartTime, ticks(st.UTime+st.STime, r.hz()), nil
		case err != nil:
			return 0, 0, fmt.Errorf("proctable: %w", err)
		}
		run, wait, err := ParseSchedstat(b)
		if err != nil {
			return 0, 0, fmt.Errorf("%w (%s/task/%s)", err, dir, t.Name())
		}
		busy += run + wait
	}
	return st.StartTime, busy, nil
}

// TaskBusy reads how long each task (thread) of the processes /proc lists
// ran or waited runnable for a CPU (its schedstat), by thread id: the
// readings of load.AverageRunQueue, this PID namespace's own. A task or
// process that exits while it is read is left out. HaveSchedstat says
// whether the kernel keeps the files at all.
func (r Reader) TaskBusy() (map[int32]time.Duration, error) {
	out := map[int32]time.Duration{}
	err := r.eachTask("schedstat", func(tid int32, b []byte) error {
		run, wait, err := ParseSchedstat(b)
		if err != nil {
			return err
		}
		out[tid] = run + wait
		return nil
	})
	return out, err
}

// HaveSchedstat says whether this kernel keeps the schedstat of tasks
// (CONFIG_SCHED_INFO), read from the calling process's own: the file
// there and counting (kernels before 5.14 without schedstats or delay
// accounting show "0 0 0", which would read as an idle node for ever).
func (r Reader) HaveSchedstat() bool {
	b, err := fs.ReadFile(r.FS, "self/schedstat")
	if err != nil {
		return false
	}
	run, _, err := ParseSchedstat(b)
	return err == nil && run > 0
}
