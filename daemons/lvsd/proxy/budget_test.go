package proxy

import (
	"net/netip"
	"testing"
)

// TestBudget: connections and flows share the units; flows have their own
// share and a cap per source address; every unit comes back.
func TestBudget(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")
	type op struct {
		do   string // conn, endConn, flow, endFlow
		src  netip.Addr
		want bool
	}
	tests := []struct {
		name      string
		l         Limits
		ops       []op
		units     int
		flowsUsed int
	}{
		{"connections up to the units", Limits{Units: 2, Flows: 1, FlowsPerSource: 1},
			[]op{{"conn", a, true}, {"conn", a, true}, {"conn", a, false}}, 2, 0},
		{"a connection's end gives its unit back", Limits{Units: 1, Flows: 1, FlowsPerSource: 1},
			[]op{{"conn", a, true}, {"conn", a, false}, {"endConn", a, true}, {"conn", a, true}}, 1, 0},
		{"flows take units from connections", Limits{Units: 2, Flows: 2, FlowsPerSource: 2},
			[]op{{"flow", a, true}, {"flow", b, true}, {"conn", a, false}}, 2, 2},
		{"flows have their share only", Limits{Units: 4, Flows: 2, FlowsPerSource: 4},
			[]op{{"flow", a, true}, {"flow", b, true}, {"flow", c, false}, {"conn", a, true}, {"conn", a, true}, {"conn", a, false}}, 4, 2},
		{"a source has its cap", Limits{Units: 8, Flows: 8, FlowsPerSource: 2},
			[]op{{"flow", a, true}, {"flow", a, true}, {"flow", a, false}, {"flow", b, true}, {"flow", c, true}}, 4, 4},
		{"a flow's end gives its source's share back", Limits{Units: 8, Flows: 8, FlowsPerSource: 1},
			[]op{{"flow", a, true}, {"flow", a, false}, {"endFlow", a, true}, {"flow", a, true}}, 1, 1},
		{"connections have no cap per source", Limits{Units: 3, Flows: 1, FlowsPerSource: 1},
			[]op{{"conn", a, true}, {"conn", a, true}, {"conn", a, true}}, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bg := NewBudget(tt.l)
			for i, o := range tt.ops {
				got := true
				switch o.do {
				case "conn":
					got = bg.takeConn()
				case "endConn":
					bg.endConn()
				case "flow":
					got = bg.takeFlow(o.src)
				case "endFlow":
					bg.endFlow(o.src)
				}
				if got != o.want {
					t.Fatalf("op %d (%s %s): %v, want %v", i, o.do, o.src, got, o.want)
				}
			}
			if units, flows := bg.Used(); units != tt.units || flows != tt.flowsUsed {
				t.Fatalf("used %d units, %d flows; want %d, %d", units, flows, tt.units, tt.flowsUsed)
			}
		})
	}
}

// TestBudgetFor: the budget of lvsd's unit spends at most half of its
// descriptors and memory, flows a quarter of it.
func TestBudgetFor(t *testing.T) {
	const nofile, memMiB = 65536, 512
	l := BudgetFor(nofile, memMiB)
	if l != DefaultLimits || l != (Limits{Units: 4096, Flows: 1024, FlowsPerSource: 64}) {
		t.Fatalf("BudgetFor(%d, %d) = %+v", nofile, memMiB, l)
	}
	if l.Units*fdsPerUnit > nofile/2 || l.Units*kibPerUnit > memMiB*1024/2 {
		t.Fatalf("%+v spends more than half of %d descriptors or %d MiB", l, nofile, memMiB)
	}
	if l := BudgetFor(8, 1); l.Units < 1 || l.Flows < 1 || l.FlowsPerSource < 1 {
		t.Fatalf("a tiny unit's budget %+v has a zero", l)
	}
	if l := NewBudget(Limits{}).Limits(); l != DefaultLimits {
		t.Fatalf("NewBudget of zero limits: %+v", l)
	}
}
