package server

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/level"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// levelSource gives the in-process nodes, which share one machine, the
// loads of separate one-CPU nodes: a node's run queue is the migratable
// programs that run there, each of load 1.
type levelSource struct{ c *testCluster }

func (l *levelSource) RunQueue(node uint32) (uint32, error) {
	s := l.c.node(node).srv
	s.recs.mu.Lock()
	defer s.recs.mu.Unlock()
	n := uint32(0)
	for _, rec := range s.recs.m {
		if rec.mig != nil {
			n++
		}
	}
	return n, nil
}

func (l *levelSource) ProcLoad(uint32, cpid.CPID, int32) float64 { return 1 }

// oneCPU is /proc as the load vector reads it, of a node with one CPU
// (the run queue comes from the levelSource).
func oneCPU(name string) ([]byte, error) {
	switch name {
	case "loadavg":
		return []byte("0.00 0.00 0.00 1/100 1000\n"), nil
	case "stat":
		return []byte("cpu  1 0 0 0\ncpu0 1 0 0 0\nprocs_running 1\n"), nil
	}
	return []byte("MemTotal: 1048576 kB\nMemAvailable: 524288 kB\n"), nil
}

// levelSetup is what levelCluster starts.
type levelSetup struct {
	nodes    int
	disabled bool
	coolDown time.Duration
	// procs coopcounters, with args, start on node 1.
	procs int
	args  []string
}

// levelCluster starts nodes whose leveler balances coopcounter, and the
// coopcounters migratable on node 1; the load exchange and the leveler
// run from then on.
func levelCluster(t *testing.T, ls levelSetup) (*testCluster, []int64) {
	bin := buildCounter(t)
	src := &levelSource{}
	c := startClusterWith(t, ls.nodes, Config{CoopDir: t.TempDir(),
		Load:    LoadConfig{Interval: 50 * time.Millisecond, ReadProc: oneCPU, LoadLevel: []string{"coopcounter"}},
		Leveler: LevelerConfig{Enabled: !ls.disabled, Period: 200 * time.Millisecond, CoolDown: ls.coolDown, Source: src}})
	src.c = c
	ctx, cancel := context.WithCancel(context.Background())
	var cpids []int64
	for range ls.procs {
		p, err := c.client(1).Exec(ctx, 1, vproc.Cmd{Args: append([]string{bin}, ls.args...), Migratable: true, Stdout: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		cpids = append(cpids, p.Cpid)
		t.Cleanup(func() {
			_, _ = io.WriteString(p.Stdin, "exit 0\n")
			_, _ = p.Wait()
		})
	}
	t.Cleanup(cancel)
	// Every one linked to its checkpoint socket, then the exchange and
	// the leveler start: the imbalance is 6/0/0.
	waitUntil(t, 20*time.Second, "the programs to link", func() bool {
		s := c.node(1).srv
		s.recs.mu.Lock()
		defer s.recs.mu.Unlock()
		linked := 0
		for _, rec := range s.recs.m {
			if rec.mig != nil && rec.mig.link.linked() != nil {
				linked++
			}
		}
		return linked == ls.procs
	})
	for n := uint32(1); n <= uint32(ls.nodes); n++ {
		go c.node(n).srv.RunLoad(ctx)
		go c.node(n).srv.RunLevel(ctx)
	}
	return c, cpids
}

// waitUntil polls ok until it holds, failing the test past timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waiting for %s", what)
		}
	}
}

// spread is how many of cpids run on nodes 1, 2 and 3.
func spread(c *testCluster, cpids []int64) [3]int {
	var on [3]int
	for _, x := range cpids {
		if n, _ := runsOn(c, x); n >= 1 && n <= 3 {
			on[n-1]++
		}
	}
	return on
}

// levelStatus is node n's `ssi loadlevel status`.
func levelStatus(t *testing.T, c *testCluster, n uint32) *vprocv1.LevelStatusReply {
	t.Helper()
	r, err := loadAPI{s: c.node(n).srv}.LevelStatus(context.Background(), &vprocv1.LevelStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// decisionsOf counts the cluster's decisions of kind k.
func decisionsOf(t *testing.T, c *testCluster, k level.Kind) int {
	total := 0
	for n := uint32(1); n <= 3; n++ {
		for _, d := range levelStatus(t, c, n).Decisions {
			if d.Kind == string(k) {
				total++
			}
		}
	}
	return total
}

// TestLevelerSpreads: six registered programs on node 1 of 3 are spread
// 2/2/2 in four moves (the fewest), then stay put past the cool-down.
func TestLevelerSpreads(t *testing.T) {
	const coolDown = 2 * time.Second
	c, cpids := levelCluster(t, levelSetup{nodes: 3, coolDown: coolDown, procs: 6})
	begin := time.Now()
	waitUntil(t, 60*time.Second, "2/2/2", func() bool { return spread(c, cpids) == [3]int{2, 2, 2} })
	t.Logf("6/0/0 to 2/2/2 in %v", time.Since(begin))
	waitUntil(t, 10*time.Second, "four moves recorded", func() bool { return decisionsOf(t, c, level.KindMoved) >= 4 })
	// Every node decides past the last cool-down, several periods more.
	settled := time.Now().Add(coolDown + 5*200*time.Millisecond)
	waitUntil(t, 30*time.Second, "periods past the cool-down", func() bool {
		for n := uint32(1); n <= 3; n++ {
			ds := levelStatus(t, c, n).Decisions
			if len(ds) == 0 || time.Unix(0, ds[len(ds)-1].LastUnixNano).Before(settled) {
				return false
			}
		}
		return true
	})
	if got := spread(c, cpids); got != [3]int{2, 2, 2} {
		t.Errorf("after the cool-down the programs run %v", got)
	}
	if moved, failed := decisionsOf(t, c, level.KindMoved), decisionsOf(t, c, level.KindFailed); moved != 4 || failed != 0 {
		t.Errorf("%d moves and %d failed, want 4 and 0", moved, failed)
	}
	for n := uint32(1); n <= 3; n++ {
		st := levelStatus(t, c, n)
		if !st.Enabled || len(st.Loads) != 3 {
			t.Errorf("node %d: enabled %v, loads of %d nodes", n, st.Enabled, len(st.Loads))
		}
		for _, d := range st.Decisions {
			t.Logf("node %d: %s ×%d: %s", n, d.Kind, d.Count, d.Reason)
		}
		if last := st.Decisions[len(st.Decisions)-1]; last.Kind != string(level.KindBalanced) && last.Kind != string(level.KindTooHeavy) {
			t.Errorf("node %d's last decision: %s: %s", n, last.Kind, last.Reason)
		}
	}
}

// TestLevelerDisabled: with the leveler off, nothing moves, and its status
// says so.
func TestLevelerDisabled(t *testing.T) {
	c, cpids := levelCluster(t, levelSetup{nodes: 3, disabled: true, procs: 6})
	waitUntil(t, 20*time.Second, "ten periods", func() bool {
		ds := levelStatus(t, c, 1).Decisions
		return len(ds) == 1 && ds[0].Count >= 10
	})
	if got := spread(c, cpids); got != [3]int{6, 0, 0} {
		t.Errorf("with the leveler off the programs run %v", got)
	}
	st := levelStatus(t, c, 1)
	if st.Enabled || st.Decisions[0].Kind != string(level.KindDisabled) || !strings.Contains(st.Decisions[0].Reason, "enabled: false") {
		t.Errorf("status: %+v", st)
	}
}

// TestLevelCandidatesFromProc: without a Source the leveler measures the
// registered, movable programs in /proc, and tells the others apart.
func TestLevelCandidatesFromProc(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 1, Config{CoopDir: t.TempDir(), Load: LoadConfig{LoadLevel: []string{"coopcounter", "sleep"}},
		Leveler: LevelerConfig{Enabled: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := map[string]struct {
		registered bool
		notMovable string
	}{}
	for _, tc := range []struct {
		args       []string
		migratable bool
		registered bool
		notMovable string
	}{
		{[]string{bin}, true, true, ""},
		{[]string{"sleep", "30"}, false, false, "not started migratable"},
		{[]string{"sh", "-c", "sleep 30"}, false, false, "not started migratable"},
	} {
		p, err := c.client(1).Exec(ctx, 1, vproc.Cmd{Args: tc.args, Migratable: tc.migratable, Stdout: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Signal(9); _, _ = p.Wait() }()
		want[strconv.FormatInt(p.Cpid, 10)] = struct {
			registered bool
			notMovable string
		}{tc.registered, tc.notMovable}
	}
	s := c.node(1).srv
	waitUntil(t, 20*time.Second, "the counter to link", func() bool {
		for _, cd := range s.levelCandidates(time.Now()) {
			if cd.Registered && cd.NotMovable == "" {
				return true
			}
		}
		return false
	})
	cands := s.levelCandidates(time.Now())
	if len(cands) != 3 {
		t.Fatalf("candidates: %+v", cands)
	}
	for _, cd := range cands {
		w := want[strconv.FormatInt(int64(cd.ID), 10)]
		if cd.Registered != w.registered || cd.NotMovable != w.notMovable || cd.Load != -1 ||
			cd.Sampled != (w.registered && w.notMovable == "") || (cd.Sampled && (cd.Sample.Start == 0 || cd.Sample.PID == 0)) {
			t.Errorf("candidate %+v, want %+v", cd, w)
		}
	}
	// One node: no move, and the reason says so.
	s.levelTick(ctx, time.Now())
	if ds := levelStatus(t, c, 1).Decisions; len(ds) != 1 || ds[0].Kind != string(level.KindNoLoad) {
		t.Errorf("decisions: %+v", ds)
	}
}

// TestLevelerFailedMove: moves that fail (the programs refuse to
// checkpoint) are recorded with the reason, the programs run on where
// they were, and none is tried again within the cool-down.
func TestLevelerFailedMove(t *testing.T) {
	c, cpids := levelCluster(t, levelSetup{nodes: 2, coolDown: time.Minute, procs: 3, args: []string{"nocheckpoint"}})
	waitUntil(t, 30*time.Second, "every program tried, then nothing left to try", func() bool {
		ds := levelStatus(t, c, 1).Decisions
		if len(ds) == 0 {
			return false
		}
		last := ds[len(ds)-1]
		return last.Kind == string(level.KindNothing) && strings.Contains(last.Reason, "3 failed to move within the cool-down")
	})
	tried := map[int64]bool{}
	for _, d := range levelStatus(t, c, 1).Decisions {
		if d.Kind != string(level.KindFailed) {
			continue
		}
		if tried[d.Cpid] || !strings.Contains(d.Reason, "could not checkpoint: not now") {
			t.Errorf("failed move: %s", d.Reason)
		}
		t.Logf("%s", d.Reason)
		tried[d.Cpid] = true
	}
	if len(tried) != 3 {
		t.Errorf("%d programs tried, want 3", len(tried))
	}
	for _, x := range cpids {
		_, on1 := c.node(1).srv.record(cpid.CPID(x))
		_, on2 := c.node(2).srv.record(cpid.CPID(x))
		if !on1 || on2 {
			t.Errorf("cpid %d: on node 1 %v, on node 2 %v; want only node 1", x, on1, on2)
		}
	}
}
