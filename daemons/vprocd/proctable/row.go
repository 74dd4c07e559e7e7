package proctable

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// Row is one process as `ssi ps` shows it and `ssi ps -o json` prints it.
type Row struct {
	CPID cpid.CPID `json:"cpid"`
	// Node is where the row was read: where the process runs now.
	Node uint32 `json:"node"`
	// PID is the pid on Node.
	PID int32 `json:"pid"`
	// PPID is the parent as a cpid of the same node; 0 for none (pid 1,
	// kthreadd).
	PPID cpid.CPID `json:"ppid"`
	// UID and GID are the effective ids.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// User is UID's name; vprocd leaves it empty (uids are the same on
	// every node, so the CLI names them), psview fills it.
	User string `json:"user,omitempty"`
	// Stat is ps's STAT: the state letter, then < N L s l + as they
	// apply (see StatLetters).
	Stat string `json:"stat"`
	// CPU is %CPU of one CPU: the lifetime average from Reader, or the
	// recent rate from TopCPU.
	CPU float64 `json:"cpu_percent"`
	// RSS is the resident set in KiB.
	RSS uint64 `json:"rss_kib"`
	// Start is when the process started (boot time plus its start ticks).
	Start time.Time `json:"start"`
	// CPUTime is the user and system CPU time used (ps's TIME).
	CPUTime time.Duration `json:"cpu_time_ns"`
	Nice    int32         `json:"nice"`
	// Comm is the kernel's name of the process (at most 15 bytes).
	Comm string `json:"comm"`
	// Args is its argv; nil for a kernel thread or a zombie.
	Args []string `json:"args"`
	// Kernel marks a kernel thread.
	Kernel bool `json:"kernel,omitempty"`
	// Migrate says how a program started migratable would move ("coop",
	// "criu", or "no: " and why not); vprocd fills it, "" for the other
	// processes.
	Migrate string `json:"migrate,omitempty"`
}

// StatLetters is ps's STAT for s and its locked memory (KiB): the state,
// then '<' for a negative nice, 'N' for a positive one, 'L' for locked
// pages, 's' for a session leader, 'l' for a multithreaded process, '+' in
// its terminal's foreground process group.
func StatLetters(s Stat, locked uint64) string {
	var b strings.Builder
	b.WriteByte(s.State)
	switch {
	case s.Nice < 0:
		b.WriteByte('<')
	case s.Nice > 0:
		b.WriteByte('N')
	}
	if locked > 0 {
		b.WriteByte('L')
	}
	if s.Session == s.PID {
		b.WriteByte('s')
	}
	if s.Threads > 1 {
		b.WriteByte('l')
	}
	if s.TPGid >= 0 && s.TPGid == s.PGrp {
		b.WriteByte('+')
	}
	return b.String()
}

// ticks converts clock ticks at hz per second to a Duration, saturating.
func ticks(t, hz uint64) time.Duration {
	sec := t / hz
	if sec >= math.MaxInt64/uint64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(sec)*time.Second + time.Duration(t%hz)*time.Second/time.Duration(hz)
}

// LifetimeCPU is ps's %CPU: used over the time since the process started,
// in percent; 0 when no time has passed.
func LifetimeCPU(used, alive time.Duration) float64 {
	if alive <= 0 || used <= 0 {
		return 0
	}
	return float64(used) / float64(alive) * 100
}

// TopCPU returns cur with CPU set as top computes it: the CPU time each
// process used since prev over elapsed, the time between the two reads
// of the node (the difference of their Snapshot.Uptime). A process is the
// same in both when its CPID and Start are; one not in prev (new, or
// filtered out before) keeps the CPU it has. elapsed <= 0 leaves cur's
// CPU as is. cur is not modified.
func TopCPU(prev, cur []Row, elapsed time.Duration) []Row {
	out := slices.Clone(cur)
	if elapsed <= 0 {
		return out
	}
	type key struct {
		c     cpid.CPID
		start int64
	}
	before := make(map[key]time.Duration, len(prev))
	for _, r := range prev {
		before[key{r.CPID, r.Start.UnixNano()}] = r.CPUTime
	}
	for i, r := range out {
		was, ok := before[key{r.CPID, r.Start.UnixNano()}]
		if !ok {
			continue
		}
		out[i].CPU = max(0, LifetimeCPU(r.CPUTime-was, elapsed))
	}
	return out
}

// Filter selects rows. An empty list selects any value; a row must match
// every list that is not empty.
type Filter struct {
	Nodes []uint32
	UIDs  []uint32
	CPIDs []cpid.CPID
}

// Match reports whether f selects r.
func (f Filter) Match(r Row) bool {
	return (len(f.Nodes) == 0 || slices.Contains(f.Nodes, r.Node)) &&
		(len(f.UIDs) == 0 || slices.Contains(f.UIDs, r.UID)) &&
		(len(f.CPIDs) == 0 || slices.Contains(f.CPIDs, r.CPID))
}

// Apply returns the rows f selects, in their order, in a new slice.
func (f Filter) Apply(rows []Row) []Row {
	var out []Row
	for _, r := range rows {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	return out
}

// SortByCPID sorts rows by cpid (ps's order: by origin node, then pid),
// then by Node for a cpid seen on two nodes mid-move.
func SortByCPID(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.CPID, b.CPID), cmp.Compare(a.Node, b.Node))
	})
}

// SortByCPU sorts rows by %CPU, highest first (top's order), then by
// cpid.
func SortByCPU(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(b.CPU, a.CPU), cmp.Compare(a.CPID, b.CPID), cmp.Compare(a.Node, b.Node))
	})
}
