package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
)

func TestLoadLevelStatus(t *testing.T) {
	dir := startLoadVprocd(t)
	code, out, errs := run(dir, "loadlevel", "status")
	if code != 0 || !strings.HasPrefix(out, "load leveler of node 1: off (vprocd.leveler.enabled: false)\n\nNODE  RUNQ  CPUS  PER CPU  AGE\n1*  ") ||
		!strings.HasSuffix(out, "\nno decision yet\n") {
		t.Errorf("ssi loadlevel status: %d %q %q", code, out, errs)
	}
	code, out, errs = run(dir, "loadlevel", "status", "-o", "json")
	var st vproc.LevelStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Node != 1 || st.Enabled || len(st.Loads) != 1 || st.Decisions == nil {
		t.Errorf("ssi loadlevel status -o json: %d %q %q (%v)", code, out, errs, err)
	}
	if code, _, _ := run(dir, "loadlevel", "status", "-o", "yaml"); code != exitUsage {
		t.Errorf("ssi loadlevel status -o yaml: %d, want %d", code, exitUsage)
	}
}

func TestRenderLevelStatus(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	st := vproc.LevelStatus{Node: 1, Now: now, Enabled: true, Period: 2 * time.Second, CoolDown: 20 * time.Second, Stability: 1.3,
		Moving: 4194309, MovingTo: 3,
		Loads: []vproc.Load{{Node: 1, Self: true, RunQueue: 6, RunQueueAvg: 6.42, CPUs: 2, Heard: now}, {Node: 2, RunQueue: 1, CPUs: 2, Heard: now.Add(-1500 * time.Millisecond)}},
		Decisions: []vproc.LevelDecision{
			{Last: now.Add(-4 * time.Second), Count: 1, Kind: "moved", CPID: 4194308, From: 1, To: 2, Reason: "moved: move 4194308 ..."},
			{Last: now.Add(-2 * time.Second), Count: 3, Kind: "balanced", From: 1, To: 2, Reason: "no move: ..."},
			{Last: now, Count: 1, Kind: "disabled", Reason: "no move: off"},
		}}
	var b bytes.Buffer
	renderLevelStatus(&b, st)
	want := `load leveler of node 1: on: every 2s, cool-down 20s, stability factor 1.3
moving 4194309 to node 3

NODE  RUNQ  CPUS  PER CPU  AGE
1*    6.42  2     3.21     0.0s
2     1.00  2     0.50     1.5s

AGO   COUNT  DECISION  CPID     MOVE  REASON
4.0s  1      moved     4194308  1->2  moved: move 4194308 ...
2.0s  3      balanced  -        1->2  no move: ...
0.0s  1      disabled  -        -     no move: off
`
	if b.String() != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", b.String(), want)
	}
}
