package proctable

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

var boot = time.Unix(1795968787, 0).UTC()

func TestSnapshot(t *testing.T) {
	fsys := sampleFS()
	// A process listed but gone before its files were read is left out.
	fsys["99/cmdline"] = &fstest.MapFile{}
	s, err := Reader{FS: fsys, Node: 3}.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != 3 || !s.Boot.Equal(boot) || s.Uptime != 12200*time.Second {
		t.Fatalf("snapshot header %d %v %v", s.Node, s.Boot, s.Uptime)
	}
	n3 := func(pid int32) cpid.CPID { return cpid.MustMake(3, pid) }
	want := []Row{
		{CPID: n3(1), Node: 3, PID: 1, Stat: "SLl", RSS: 13456, Start: boot.Add(240 * time.Millisecond), CPUTime: 61320 * time.Millisecond,
			Comm: "process_api", Args: []string{"process_api", "--firecracker-init", "--addr", "0.0.0.0:2024"}},
		{CPID: n3(2), Node: 3, PID: 2, Stat: "S", Start: boot.Add(240 * time.Millisecond), Comm: "kthreadd", Kernel: true},
		{CPID: n3(4), Node: 3, PID: 4, PPID: n3(2), Stat: "I<", Start: boot.Add(240 * time.Millisecond), Nice: -20, Comm: "kworker/R-rcu_gp", Kernel: true},
		{CPID: n3(6250), Node: 3, PID: 6250, PPID: n3(6129), Stat: "Ss+", RSS: 2148, Start: boot.Add(12107980 * time.Millisecond),
			Comm: "agetty", Args: []string{"/sbin/agetty", "-o", "-p -- \\u", "--noclear", "--keep-baud", "-", "115200,38400,9600", "xterm"}},
		{CPID: n3(7710), Node: 3, PID: 7710, PPID: n3(7708), UID: 1000, GID: 100, Stat: "RN", RSS: 2168, Start: boot.Add(12136740 * time.Millisecond),
			CPUTime: 3 * time.Second, Nice: 5, Comm: "a) b (c", Args: []string{"bash", "-c", "printf \"a) b (c\" > /proc/$$/comm"}},
	}
	got := slices.Clone(s.Rows)
	SortByCPID(got)
	// %CPU is checked on its own: a float.
	cpu := map[int32]float64{}
	for i := range got {
		cpu[got[i].PID] = got[i].CPU
		got[i].CPU = 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n%+v\nwant\n%+v", got, want)
	}
	// ps's lifetime figure: CPU time over the time since start.
	for pid, w := range map[int32]float64{1: 61.32 / 12199.76 * 100, 2: 0, 7710: 3 / (12200 - 12136.74) * 100} {
		if d := cpu[pid] - w; d > 1e-9 || d < -1e-9 {
			t.Errorf("pid %d: CPU %v, want %v", pid, cpu[pid], w)
		}
	}
}

func TestSnapshotErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(fstest.MapFS)
		err    string
	}{
		{name: "no /proc/stat", change: func(m fstest.MapFS) { delete(m, "stat") }, err: "proctable: open stat"},
		{name: "no btime", change: func(m fstest.MapFS) { m["stat"] = &fstest.MapFile{Data: []byte("cpu 1\n")} }, err: "no btime"},
		{name: "no uptime", change: func(m fstest.MapFS) { delete(m, "uptime") }, err: "open uptime"},
		{name: "bad stat of a process", change: func(m fstest.MapFS) { m["4/stat"] = &fstest.MapFile{Data: []byte("4 (x) S 1")} }, err: "(pid 4)"},
		{name: "stat of another pid", change: func(m fstest.MapFS) { m["4/stat"] = &fstest.MapFile{Data: []byte(stat2)} }, err: "4/stat is of pid 2"},
		{name: "bad status", change: func(m fstest.MapFS) { m["4/status"] = &fstest.MapFile{Data: []byte("Name: x\n")} }, err: "lacks a Uid"},
		{name: "parent beyond pid range", change: func(m fstest.MapFS) {
			m["4/stat"] = &fstest.MapFile{Data: []byte(strings.Replace(stat4, " I 2 ", " I 4194304 ", 1))}
		}, err: "parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := sampleFS()
			tt.change(fsys)
			_, err := Reader{FS: fsys, Node: 1}.Snapshot()
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Count(err.Error(), "proctable: ") != 1 {
				t.Fatalf("err = %v, want one with %q", err, tt.err)
			}
		})
	}
	if _, err := (Reader{FS: sampleFS(), Node: 0}).Snapshot(); !errors.Is(err, cpid.ErrNode) {
		t.Fatalf("node 0: %v", err)
	}
}

func TestFiles(t *testing.T) {
	r := Reader{FS: sampleFS(), Node: 1}
	f, err := r.Files(7710)
	if err != nil {
		t.Fatal(err)
	}
	if string(f.Stat) != stat7710 || string(f.Status) != status7710 || string(f.Cmdline) != cmdline7710 || string(f.Environ) != environ7710 {
		t.Fatalf("Files = %+v", f)
	}
	for _, pid := range []int32{0, -1, 99, cpid.MaxPID + 1} {
		if _, err := r.Files(pid); !Gone(err) {
			t.Errorf("Files(%d) = %v, want an error Gone reports", pid, err)
		}
	}
}

// TestLiveProc reads this test's own process from the real /proc.
func TestLiveProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	r := Reader{FS: os.DirFS("/proc"), Node: 1}
	s, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	me := Filter{CPIDs: []cpid.CPID{cpid.MustMake(1, int32(os.Getpid()))}}.Apply(s.Rows)
	if len(me) != 1 {
		t.Fatalf("own process: %d rows", len(me))
	}
	row := me[0]
	if row.UID != uint32(os.Geteuid()) || !reflect.DeepEqual(row.Args, os.Args) || row.RSS == 0 || row.PPID.PID() != int32(os.Getppid()) ||
		row.Start.After(time.Now()) || row.Kernel {
		t.Fatalf("own row %+v", row)
	}
	f, err := r.Files(int32(os.Getpid()))
	if err != nil || len(f.Environ) == 0 {
		t.Fatalf("Files: %v", err)
	}
}

func TestTopCPU(t *testing.T) {
	a := cpid.MustMake(1, 10)
	b := cpid.MustMake(1, 11)
	c := cpid.MustMake(1, 12)
	t0 := boot.Add(time.Hour)
	prev := []Row{
		{CPID: a, Start: t0, CPUTime: 10 * time.Second, CPU: 1},
		{CPID: b, Start: t0, CPUTime: 5 * time.Second},
		{CPID: c, Start: t0, CPUTime: 50 * time.Second},
	}
	cur := []Row{
		{CPID: a, Start: t0, CPUTime: 10*time.Second + 500*time.Millisecond, CPU: 1},   // half a CPU
		{CPID: b, Start: t0, CPUTime: 7 * time.Second, CPU: 0.2},                       // two CPUs' worth
		{CPID: c, Start: t0.Add(time.Second), CPUTime: 100 * time.Millisecond, CPU: 9}, // pid reused: new
		{CPID: cpid.MustMake(1, 13), Start: t0, CPUTime: time.Second, CPU: 3},          // new: keeps its figure
	}
	got := TopCPU(prev, cur, time.Second)
	want := []float64{50, 200, 9, 3}
	for i := range want {
		if got[i].CPU != want[i] {
			t.Errorf("row %d: CPU %v, want %v", i, got[i].CPU, want[i])
		}
	}
	if cur[0].CPU != 1 {
		t.Fatal("TopCPU modified its input")
	}
	if got := TopCPU(prev, cur, 0); got[0].CPU != 1 {
		t.Fatalf("elapsed 0: %v", got[0].CPU)
	}
	// CPU time going backwards (it cannot, but it is outside data) is 0.
	if got := TopCPU(cur, prev, time.Second); got[0].CPU != 0 {
		t.Fatalf("backwards: %v", got[0].CPU)
	}
}

func TestFilterAndSort(t *testing.T) {
	rows := []Row{
		{CPID: cpid.MustMake(2, 5), Node: 2, UID: 0, CPU: 1},
		{CPID: cpid.MustMake(1, 9), Node: 3, UID: 1000, CPU: 50}, // moved from node 1 to 3
		{CPID: cpid.MustMake(1, 7), Node: 1, UID: 1000, CPU: 1},
		{CPID: cpid.MustMake(3, 1), Node: 3, UID: 0, CPU: 0},
	}
	ids := func(rs []Row) []cpid.CPID {
		var out []cpid.CPID
		for _, r := range rs {
			out = append(out, r.CPID)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		f    Filter
		want []cpid.CPID
	}{
		{"all", Filter{}, ids(rows)},
		{"node 3", Filter{Nodes: []uint32{3}}, []cpid.CPID{cpid.MustMake(1, 9), cpid.MustMake(3, 1)}},
		{"uid 1000", Filter{UIDs: []uint32{1000}}, []cpid.CPID{cpid.MustMake(1, 9), cpid.MustMake(1, 7)}},
		{"node and uid", Filter{Nodes: []uint32{1, 2}, UIDs: []uint32{1000}}, []cpid.CPID{cpid.MustMake(1, 7)}},
		{"cpids", Filter{CPIDs: []cpid.CPID{cpid.MustMake(3, 1), cpid.MustMake(2, 5)}}, []cpid.CPID{cpid.MustMake(2, 5), cpid.MustMake(3, 1)}},
		{"none", Filter{UIDs: []uint32{7}}, nil},
	} {
		if got := ids(tt.f.Apply(rows)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	byCPID := slices.Clone(rows)
	SortByCPID(byCPID)
	if got, want := ids(byCPID), []cpid.CPID{cpid.MustMake(1, 7), cpid.MustMake(1, 9), cpid.MustMake(2, 5), cpid.MustMake(3, 1)}; !reflect.DeepEqual(got, want) {
		t.Errorf("SortByCPID: %v, want %v", got, want)
	}
	byCPU := slices.Clone(rows)
	SortByCPU(byCPU)
	if got, want := ids(byCPU), []cpid.CPID{cpid.MustMake(1, 9), cpid.MustMake(1, 7), cpid.MustMake(2, 5), cpid.MustMake(3, 1)}; !reflect.DeepEqual(got, want) {
		t.Errorf("SortByCPU: %v, want %v", got, want)
	}
}

func TestRowJSON(t *testing.T) {
	r := Row{CPID: cpid.MustMake(1, 7), Node: 1, PID: 7, Stat: "S", Start: boot, CPUTime: time.Second, Comm: "x", Args: []string{"x"}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cpid":4194311,"node":1,"pid":7,"ppid":0,"uid":0,"gid":0,"stat":"S","cpu_percent":0,"rss_kib":0,"start":"2026-11-29T16:13:07Z","cpu_time_ns":1000000000,"nice":0,"comm":"x","args":["x"]}`
	if string(b) != want {
		t.Fatalf("JSON:\n%s\nwant\n%s", b, want)
	}
	var back Row
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("round trip %+v, %v", back, err)
	}
}

func TestTicks(t *testing.T) {
	for _, tt := range []struct {
		t, hz uint64
		want  time.Duration
	}{
		{0, 100, 0}, {1, 100, 10 * time.Millisecond}, {150, 100, 1500 * time.Millisecond}, {1, 300, time.Second / 300},
		{1 << 42, 100, 1<<63 - 1}, // saturates
	} {
		if got := ticks(tt.t, tt.hz); got != tt.want {
			t.Errorf("ticks(%d, %d) = %v, want %v", tt.t, tt.hz, got, tt.want)
		}
	}
}

// TestRunnable counts the tasks in state R of every process, threads
// included, skipping what exits while it is read.
func TestRunnable(t *testing.T) {
	stat := func(tid int, state string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(strconv.Itoa(tid) + " (a b) " + state + " 1 1 1 0 -1 4194304 0 0 0 0 1 2 0 0 20 0 1 0 100 0 0\n")}
	}
	fsys := fstest.MapFS{
		"1/task/1/stat":     stat(1, "S"),
		"20/task/20/stat":   stat(20, "R"),
		"20/task/21/stat":   stat(21, "R"),
		"20/task/22/stat":   stat(22, "S"),
		"30/task/30/stat":   stat(30, "D"),
		"40/task/40/stat":   stat(40, "R"),
		"40/task/41":        &fstest.MapFile{Mode: fs.ModeDir}, // a thread gone before its stat was read
		"50/status":         &fstest.MapFile{},                 // a process gone before its tasks were listed
		"self/task/99/stat": stat(99, "R"),                     // not a pid
	}
	for _, c := range []struct {
		name   string
		change func(fstest.MapFS)
		want   uint32
		err    string
	}{
		{name: "tasks in R", want: 3},
		{name: "none", change: func(m fstest.MapFS) {
			for k := range m {
				delete(m, k)
			}
		}},
		{name: "bad stat", change: func(m fstest.MapFS) { m["30/task/30/stat"] = &fstest.MapFile{Data: []byte("garbage")} }, err: "no (comm)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := fstest.MapFS{}
			for k, v := range fsys {
				m[k] = v
			}
			if c.change != nil {
				c.change(m)
			}
			n, err := Reader{FS: m}.Runnable()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || n != c.want {
				t.Fatalf("Runnable: %d %v, want %d", n, err, c.want)
			}
		})
	}
}

// TestTaskBusy reads the schedstat of every task, threads included, by
// thread id, skipping what exits while it is read.
func TestTaskBusy(t *testing.T) {
	ss := func(run, wait int) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(strconv.Itoa(run) + " " + strconv.Itoa(wait) + " 7\n")}
	}
	m := fstest.MapFS{
		"1/task/1/schedstat":   ss(100, 20),
		"20/task/20/schedstat": ss(5, 0),
		"20/task/21/schedstat": ss(0, 9),
		"40/task/41":           &fstest.MapFile{Mode: fs.ModeDir}, // a thread gone before its schedstat was read
		"50/status":            &fstest.MapFile{},                 // a process gone before its tasks were listed
		"self/schedstat":       ss(1, 1),                          // not a pid
	}
	r := Reader{FS: m}
	got, err := r.TaskBusy()
	want := map[int32]time.Duration{1: 120, 20: 5, 21: 9}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("TaskBusy: %v %v, want %v", got, err, want)
	}
	if !r.HaveSchedstat() {
		t.Error("HaveSchedstat: false with self/schedstat there")
	}
	m["20/task/21/schedstat"] = &fstest.MapFile{Data: []byte("1 x 2\n")}
	if _, err := r.TaskBusy(); err == nil || !strings.Contains(err.Error(), "20/task/21") {
		t.Errorf("a bad schedstat: %v, want an error naming the task", err)
	}
	m["self/schedstat"] = ss(0, 0)
	if r.HaveSchedstat() {
		t.Error("HaveSchedstat: true with a schedstat that does not count")
	}
	delete(m, "self/schedstat")
	if r.HaveSchedstat() {
		t.Error("HaveSchedstat: true without self/schedstat")
	}
}
