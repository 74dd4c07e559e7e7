package runlevel

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// members builds a view: "1 2 -3" is nodes 1 and 2 UP, 3 DOWN.
func members(s string) []Member {
	var out []Member
	for _, f := range strings.Fields(s) {
		var n int
		fmt.Sscan(strings.TrimPrefix(f, "-"), &n)
		out = append(out, Member{Node: n, Up: !strings.HasPrefix(f, "-")})
	}
	return out
}

func TestMajority(t *testing.T) {
	for n, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if got := Majority(n); got != want {
			t.Errorf("Majority(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		members     string
		init, self  int
		order, skip []int
	}{
		{"1 2 3", 1, 0, []int{2, 3, 1}, nil},
		{"3 1 2", 2, 0, []int{1, 3, 2}, nil},
		{"1 2 3", 3, 0, []int{1, 2, 3}, nil},
		{"1 2 3", 0, 0, []int{1, 2, 3}, nil},
		{"1 2 3", 1, 2, []int{3, 1, 2}, nil}, // driven from node 2: it goes last, after the init node
		{"1 2 3", 1, 1, []int{2, 3, 1}, nil}, // driven from the init node
		{"1 2 3", 0, 1, []int{2, 3, 1}, nil},
		{"1 -2 3 4", 1, 0, []int{3, 4, 1}, []int{2}},
		{"-1 2 3", 1, 2, []int{3, 2}, []int{1}}, // an init node that is DOWN is skipped
		{"5", 5, 5, []int{5}, nil},
		{"", 0, 0, nil, nil},
	} {
		order, skip := Order(members(tc.members), tc.init, tc.self)
		if !slices.Equal(order, tc.order) || !slices.Equal(skip, tc.skip) {
			t.Errorf("Order(%q, init %d, self %d) = %v, skipped %v; want %v, %v", tc.members, tc.init, tc.self, order, skip, tc.order, tc.skip)
		}
	}
}

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		order   []int
		done    []int
		members string
		init    int
		want    string
	}{
		{"first", []int{2, 3, 1}, nil, "1 2 3", 1, "isolate node 2"},
		{"second", []int{2, 3, 1}, []int{2}, "1 2 3", 1, "isolate node 3"},
		{"hand the init role to the first node done", []int{2, 3, 1}, []int{2, 3}, "1 2 3", 1, "move init from node 1 to node 2"},
		{"to an UP one", []int{2, 3, 1}, []int{2, 3}, "1 2 3 4 5", 1, "move init from node 1 to node 2"},
		{"after the move", []int{2, 3, 1}, []int{2, 3}, "1 2 3", 2, "isolate node 1"},
		{"done", []int{2, 3, 1}, []int{2, 3, 1}, "1 2 3", 2, "done"},
		{"nothing to do", nil, nil, "", 0, "done"},
		{"no init node", []int{1, 2, 3}, []int{1}, "1 2 3", 0, "isolate node 2"},
		{"the role moved to the next node: it hands it on first", []int{2, 3, 1}, []int{2}, "1 2 3", 3, "move init from node 3 to node 2"},
		{"the role moved to the first node before any is done: it waits", []int{2, 3, 1}, nil, "1 2 3", 2, "isolate node 3"},
		{"and then hands it on", []int{2, 3, 1}, []int{3}, "1 2 3", 2, "move init from node 2 to node 3"},
		{"driven from node 3, the init node before it", []int{2, 1, 3}, []int{2}, "1 2 3", 1, "move init from node 1 to node 2"},
		{"then node 3 last", []int{2, 1, 3}, []int{2, 1}, "1 2 3", 2, "isolate node 3"},
		{"the node to move went DOWN", []int{2, 3, 1}, []int{2}, "1 2 -3", 1, "stop at node 3: node 3 is not UP"},
		{"the node to move left", []int{2, 3, 1}, []int{2}, "1 2", 1, "stop at node 3: node 3 is not UP"},
		{"another node went DOWN: no majority without node 3", []int{2, 3, 1}, []int{2}, "1 -2 3", 1,
			"stop at node 3: only 1 of the cluster's 3 nodes would stay UP while node 3 moves, fewer than a majority (2)"},
		{"one DOWN of five still leaves a majority", []int{1, 2, 3, 4}, nil, "1 2 3 4 -5", 4, "isolate node 1"},
		{"two DOWN of five do not", []int{1, 2, 3}, nil, "1 2 3 -4 -5", 3,
			"stop at node 1: only 2 of the cluster's 5 nodes would stay UP while node 1 moves, fewer than a majority (3)"},
		{"two of two: the other is not a majority", []int{2, 1}, nil, "1 2", 1,
			"stop at node 2: only 1 of the cluster's 2 nodes would stay UP while node 2 moves, fewer than a majority (2)"},
		{"one node alone", []int{1}, nil, "1", 1,
			"stop at node 1: only 0 of the cluster's 1 nodes would stay UP while node 1 moves, fewer than a majority (1)"},
		{"the nodes done are DOWN: nobody at the target takes the role", []int{2, 3, 1}, []int{2, 3}, "1 -2 3 4 5", 1, "move init from node 1 to node 3"},
		{"no node at the target is UP", []int{2, 1}, []int{2}, "1 -2 3 4 5", 1,
			"stop at node 1: node 1 is the init node and no node already at the target is UP to take the role"},
	} {
		got := Next(tc.order, tc.done, members(tc.members), tc.init).String()
		if got != tc.want {
			t.Errorf("%s: Next = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWalk runs a three-node change from node 3 to its end, the view
// steady: each node once, the init node after the hand-over, node 3 last.
func TestWalk(t *testing.T) {
	view := members("1 2 3")
	order, _ := Order(view, 1, 3)
	init := 1
	var trace []string
	var did []int
	for range 10 {
		s := Next(order, did, view, init)
		trace = append(trace, s.String())
		switch s.Kind {
		case Isolate:
			did = append(did, s.Node)
		case Move:
			init = s.To
		case Done, Stop:
			goto end
		}
	}
end:
	want := "isolate node 2; move init from node 1 to node 2; isolate node 1; isolate node 3; done"
	if got := strings.Join(trace, "; "); got != want {
		t.Errorf("walk: %s\nwant  %s", got, want)
	}
}

func TestReturn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	up, down := members("1 2 3"), members("1 -2 3")
	for _, tc := range []struct {
		name  string
		views []struct {
			ms   int
			view []Member
		}
		want []Verdict
	}{
		{"UP for the settling time", []struct {
			ms   int
			view []Member
		}{{0, up}, {1000, up}, {2000, up}}, []Verdict{Wait, Wait, Back}},
		{"a break starts the settling again", []struct {
			ms   int
			view []Member
		}{{0, up}, {1500, down}, {2000, up}, {3500, up}, {4000, up}}, []Verdict{Wait, Wait, Wait, Wait, Back}},
		{"not UP in time", []struct {
			ms   int
			view []Member
		}{{0, down}, {5000, down}, {10000, down}}, []Verdict{Wait, Wait, Gone}},
		{"UP at the deadline but not settled", []struct {
			ms   int
			view []Member
		}{{0, down}, {9500, up}, {10000, up}}, []Verdict{Wait, Wait, Gone}},
	} {
		r := &Return{Node: 2, Start: t0, Settle: 2 * time.Second, Timeout: 10 * time.Second}
		var got []Verdict
		for _, v := range tc.views {
			got = append(got, r.See(at(v.ms), v.view))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Final (--force): DOWN or LEFT is the end, at once; UP and
	// settled is back as before.
	left := members("1 3")
	for _, tc := range []struct {
		name string
		view []Member
		want Verdict
		why  string
	}{
		{"DOWN", down, Gone, "node 2 is DOWN in the membership after its isolate: the forced target took it out of the cluster, and it will not come back by itself"},
		{"LEFT", left, Gone, "node 2 is LEFT in the membership after its isolate: the forced target took it out of the cluster, and it will not come back by itself"},
		{"UP", up, Wait, ""},
	} {
		r := &Return{Node: 2, Start: t0, Settle: 2 * time.Second, Timeout: 10 * time.Second, Final: true}
		if got := r.See(at(100), tc.view); got != tc.want {
			t.Errorf("final, %s at 100ms: %v, want %v", tc.name, got, tc.want)
		}
		if tc.why != "" && r.Why() != tc.why {
			t.Errorf("final, %s: Why = %q\nwant %q", tc.name, r.Why(), tc.why)
		}
	}
	r := &Return{Node: 2, Settle: 2 * time.Second, Timeout: time.Minute}
	if want := "node 2 is not UP in the membership 1m0s after its isolate (stayed UP less than 2s)"; r.Why() != want {
		t.Errorf("Why = %q, want %q", r.Why(), want)
	}
}
