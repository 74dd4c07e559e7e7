package recovery

import (
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ok(ms int, node string) Poll { return Poll{At: at(ms), Node: node, OK: true, Body: node} }
func down(ms int, node string) Poll {
	return Poll{At: at(ms), Node: node}
}

func TestFirstAnswer(t *testing.T) {
	for _, c := range []struct {
		name   string
		polls  []Poll
		since  int
		not    string
		want   string
		wantAt int
		found  bool
	}{
		{"none", nil, 0, "node1", "", 0, false},
		{"the victim's own answers before the kill do not count", []Poll{ok(-20, "node1"), down(0, "node2")}, 0, "node1", "", 0, false},
		{"the victim answering after the kill does not count", []Poll{ok(10, "node1"), ok(30, "node2")}, 0, "node1", "node2", 30, true},
		{"earliest wins whatever the order", []Poll{ok(900, "node3"), down(100, "node2"), ok(400, "node2"), ok(420, "node3")}, 0, "node1", "node2", 400, true},
		{"before since does not count", []Poll{ok(-5, "node2"), ok(60, "node3")}, 0, "node1", "node3", 60, true},
		{"at since counts", []Poll{ok(0, "node2")}, 0, "node1", "node2", 0, true},
		{"a body naming another node is not the node answering", []Poll{{At: at(50), Node: "node2", OK: true, Body: "node1"}, ok(70, "node3")}, 0, "node1", "node3", 70, true},
		{"an error status is no answer", []Poll{{At: at(50), Node: "node2", Body: "node2"}}, 0, "node1", "", 0, false},
		{"a crash: the same node answering again", []Poll{down(10, "node2"), ok(180, "node2")}, 0, "", "node2", 180, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, found := FirstAnswer(c.polls, at(c.since), c.not)
			if found != c.found || (found && (p.Node != c.want || !p.At.Equal(at(c.wantAt)))) {
				t.Errorf("got %v %s at %s, want %v %s at %s", found, p.Node, p.At.Sub(t0), c.found, c.want, time.Duration(c.wantAt)*time.Millisecond)
			}
		})
	}
}

func TestHolders(t *testing.T) {
	polls := []Poll{ok(0, "node3"), down(0, "node1"), ok(20, "node2"), ok(40, "node3"), {At: at(1), Node: "node1", OK: true, Body: "node2"}}
	if got, want := Holders(polls), []string{"node2", "node3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Holders = %v, want %v", got, want)
	}
	if got := Holders(nil); got != nil {
		t.Errorf("Holders(nil) = %v", got)
	}
}

func kill(v string, leader bool, ms int) Kill {
	return Kill{Variant: v, Leader: leader, D: time.Duration(ms) * time.Millisecond}
}

func TestSummarize(t *testing.T) {
	kills := []Kill{
		kill("init", false, 2000), kill("init", false, 2200), kill("init", true, 3100),
		kill("lock", false, 16000), {Variant: "lock", Leader: true, D: time.Minute, Lost: true},
		kill("init", false, 2100),
	}
	for _, c := range []struct {
		variant string
		class   Class
		want    Figures
	}{
		{"init", NotLeader, Figures{Variant: "init", Class: NotLeader, N: 3, P50: 2100 * time.Millisecond, P99: 2200 * time.Millisecond, Max: 2200 * time.Millisecond}},
		{"init", Leader, Figures{Variant: "init", Class: Leader, N: 1, P50: 3100 * time.Millisecond, P99: 3100 * time.Millisecond, Max: 3100 * time.Millisecond}},
		{"init", All, Figures{Variant: "init", Class: All, N: 4, P50: 2100 * time.Millisecond, P99: 3100 * time.Millisecond, Max: 3100 * time.Millisecond}},
		{"lock", Leader, Figures{Variant: "lock", Class: Leader, Lost: 1}},
		{"lock", All, Figures{Variant: "lock", Class: All, N: 1, Lost: 1, P50: 16 * time.Second, P99: 16 * time.Second, Max: 16 * time.Second}},
		{"none", All, Figures{Variant: "none", Class: All}},
	} {
		if got := Summarize(kills, c.variant, c.class); got != c.want {
			t.Errorf("Summarize(%s, %s) = %+v, want %+v", c.variant, c.class, got, c.want)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, c := range []struct {
		peer, base time.Duration
		want       float64
	}{
		{4 * time.Second, 2 * time.Second, 2},
		{time.Second, 4 * time.Second, 0.25},
		{0, time.Second, 0},
		{time.Second, 0, 0},
	} {
		if got := Ratio(c.peer, c.base); got != c.want {
			t.Errorf("Ratio(%s, %s) = %v, want %v", c.peer, c.base, got, c.want)
		}
	}
}

func fig(n, lost, p50, p99 int) Figures {
	return Figures{N: n, Lost: lost, P50: time.Duration(p50) * time.Millisecond, P99: time.Duration(p99) * time.Millisecond}
}

func TestFaster(t *testing.T) {
	for _, c := range []struct {
		name  string
		base  Figures
		peers []Figures
		want  bool
	}{
		{"faster at both", fig(10, 0, 2000, 2500), []Figures{fig(10, 0, 16000, 20000), fig(10, 0, 5000, 6000)}, true},
		{"a peer's p99 under the base's", fig(10, 0, 2000, 7000), []Figures{fig(10, 0, 5000, 6000)}, false},
		{"a peer's p50 under the base's", fig(10, 0, 2000, 2500), []Figures{fig(10, 0, 1900, 9000)}, false},
		{"equal is not faster", fig(10, 0, 2000, 2500), []Figures{fig(10, 0, 2000, 2600)}, false},
		{"a lost recovery of the base", fig(9, 1, 2000, 2500), []Figures{fig(10, 0, 16000, 20000)}, false},
		{"a peer that never recovered is beaten", fig(10, 0, 2000, 2500), []Figures{fig(0, 3, 0, 0)}, true},
		{"a peer not measured beats nothing and is not beaten", fig(10, 0, 2000, 2500), []Figures{fig(0, 0, 0, 0)}, false},
		{"no base sample", fig(0, 0, 0, 0), []Figures{fig(10, 0, 16000, 20000)}, false},
		{"no peers", fig(10, 0, 2000, 2500), nil, true},
	} {
		if got := Faster(c.base, c.peers); got != c.want {
			t.Errorf("%s: Faster = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		name string
		f    Figures
		want bool
	}{
		{"under", fig(10, 0, 2000, 2900), true},
		{"at the limit", fig(10, 0, 2000, 3000), true},
		{"over", fig(10, 0, 2000, 3001), false},
		{"a lost recovery", fig(9, 1, 2000, 2500), false},
		{"not measured", fig(0, 0, 0, 0), false},
	} {
		if got := Within(c.f, 3*time.Second); got != c.want {
			t.Errorf("%s: Within = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNext(t *testing.T) {
	vs := []string{"init", "lock", "pcmk"}
	q := Quota{NotLeader: 2, Leader: 1}
	for _, c := range []struct {
		name  string
		kills []Kill
		want  Cell
		more  bool
	}{
		{"first: the first variant, not the leader", nil, Cell{"init", false}, true},
		{"the most missing wins", []Kill{kill("init", false, 1), kill("lock", false, 1)}, Cell{"pcmk", false}, true},
		{"a kill counts in its own cell, whatever was planned", []Kill{kill("init", false, 1), kill("init", false, 1), kill("lock", false, 1), kill("lock", false, 1), kill("pcmk", false, 1), kill("pcmk", false, 1)}, Cell{"init", true}, true},
		{"a lost recovery counts", []Kill{{Variant: "init", Lost: true}, {Variant: "init", Lost: true}, {Variant: "init", Leader: true, Lost: true},
			kill("lock", false, 1), kill("lock", false, 1), kill("lock", true, 1), kill("pcmk", false, 1), kill("pcmk", false, 1)}, Cell{"pcmk", true}, true},
		{"extra kills do not make up for another cell", []Kill{kill("init", false, 1), kill("init", false, 1), kill("init", false, 1), kill("init", false, 1),
			kill("lock", false, 1), kill("lock", false, 1), kill("lock", true, 1), kill("pcmk", false, 1), kill("pcmk", false, 1), kill("pcmk", true, 1)}, Cell{"init", true}, true},
		{"done", []Kill{kill("init", false, 1), kill("init", false, 1), kill("init", true, 1),
			kill("lock", false, 1), kill("lock", false, 1), kill("lock", true, 1), kill("pcmk", false, 1), kill("pcmk", false, 1), kill("pcmk", true, 1)}, Cell{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, more := Next(vs, q, c.kills)
			if got != c.want || more != c.more {
				t.Errorf("Next = %+v %v, want %+v %v", got, more, c.want, c.more)
			}
		})
	}
	if _, more := Next(vs, Quota{}, nil); more {
		t.Error("Next with no quota wants a kill")
	}
}
