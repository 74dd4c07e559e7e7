package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/cmd/ssi/psview"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

func TestPsCommand(t *testing.T) {
	dir := startVprocd(t) // node 1 UP, node 2 DOWN
	me := cpid.MustMake(1, int32(os.Getpid())).String()
	run := func(args ...string) (int, string, string) {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", dir}, args...), &out, &errs)
		return code, out.String(), errs.String()
	}

	code, out, errs := run("ps", "-p", me)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errs != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], "CPID ") || !strings.HasPrefix(lines[1], me+" ") {
		t.Errorf("ssi ps -p %s: exit %d stdout %q stderr %q", me, code, out, errs)
	}

	code, out, errs = run("ps", "-o", "json", "-n", "1", "-u", strconv.Itoa(os.Geteuid()), "-p", me)
	var rows []proctable.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 || errs != "" || len(rows) != 1 || rows[0].CPID.String() != me || rows[0].User == "" {
		t.Errorf("ssi ps -o json: exit %d stdout %q stderr %q (%v)", code, out, errs, err)
	}

	// A DOWN node named: one line, the others still shown, exit 1.
	code, out, errs = run("ps", "-n", "2", "-n", "1", "-p", me)
	if code != exitPartial || errs != "ssi ps: vproc: node 2 is DOWN\n" || !strings.Contains(out, "\n"+me+" ") {
		t.Errorf("ssi ps -n 2 -n 1: exit %d stdout %q stderr %q", code, out, errs)
	}

	for _, args := range [][]string{
		{"ps", "-p", "5"}, {"ps", "-p", "-" + me}, {"ps", "-o", "xml"}, {"ps", "-n", "0"},
		{"ps", "-u", "no-such-user-ssi-test"}, {"ps", "x"}, {"ps", "--timeout", "0s"}, {"top", "-d", "0s"},
	} {
		if code, _, errs := run(args...); code != exitUsage || errs == "" {
			t.Errorf("ssi %q: exit %d stderr %q, want a usage error", args, code, errs)
		}
	}

	code, out, errs = run("top", "-b", "--iterations", "2", "-d", "10ms", "-p", me)
	if code != 0 || errs != "" || strings.Count(out, "ssi top - ") != 2 || strings.Count(out, "\n"+me+" ") != 2 || strings.Contains(out, psview.ClearScreen) {
		t.Errorf("ssi top -b: exit %d stdout %q stderr %q", code, out, errs)
	}

	var o, e bytes.Buffer
	if code := Main([]string{"--run-dir", t.TempDir(), "ps"}, &o, &e); code != exitNoVprocd || !strings.HasPrefix(e.String(), "ssi ps: ") {
		t.Errorf("ssi ps without vprocd: exit %d stderr %q", code, e.String())
	}
}

// TestTopFrame: %CPU between two tables of one boot of a node, over its
// own uptime; a rebooted node or a first table keeps the lifetime figure;
// failed nodes get an unknown load line.
func TestTopFrame(t *testing.T) {
	boot := time.Unix(1000, 0)
	c := cpid.MustMake(1, 10)
	start := boot.Add(time.Second)
	snap := func(b time.Time, up, used time.Duration) vproc.NodeTable {
		return vproc.NodeTable{Snapshot: proctable.Snapshot{Node: 1, Boot: b, Uptime: up, Rows: []proctable.Row{
			{CPID: c, Node: 1, Start: start, CPUTime: used, CPU: 7},
		}}, Load: &vproc.Load{RunQueue: 2, Load1: 0.5, CPUs: 4, FreeMem: 1 << 30}}
	}
	prev := map[uint32]proctable.Snapshot{}
	fail := []vproc.NodeFailure{{Node: 3, Reason: "slow", Timeout: true}}
	for _, tc := range []struct {
		name string
		tab  vproc.NodeTable
		cpu  float64
	}{
		{"first table: lifetime", snap(boot, 10*time.Second, time.Second), 7},
		{"1s of CPU in 2s", snap(boot, 12*time.Second, 2*time.Second), 50},
		{"rebooted: lifetime", snap(boot.Add(time.Hour), 13*time.Second, 2*time.Second), 7},
	} {
		rows, loads := topFrame(prev, &vproc.Table{Nodes: []vproc.NodeTable{tc.tab}, Failures: fail})
		if len(rows) != 1 || rows[0].CPU != tc.cpu {
			t.Errorf("%s: rows %+v, want %%CPU %v", tc.name, rows, tc.cpu)
		}
		want := []psview.NodeLoad{{Node: 1, Known: true, RunQueue: 2, Load1: 0.5, CPUs: 4, FreeMem: 1 << 30}, {Node: 3}}
		if len(loads) != 2 || loads[0] != want[0] || loads[1] != want[1] {
			t.Errorf("%s: loads %+v", tc.name, loads)
		}
	}
	topFrame(prev, &vproc.Table{})
	if len(prev) != 0 {
		t.Errorf("a node gone from the table is still remembered: %v", prev)
	}
}
