package main

import (
	"strings"
	"testing"
	"time"
)

func TestPick(t *testing.T) {
	for _, tc := range []struct {
		in             string
		proxies, fails int
		err            string
	}{
		{"haproxy,keepalived", 1, 1, ""},
		{"keepalived", 0, 1, ""},
		{" haproxy ", 1, 0, ""},
		{"haproxy,lvsd", 2, 1, ""},
		{"lvsd,keepalived", 1, 2, ""},
		{"nginx", 0, 0, `no side "nginx"`},
		{"", 0, 0, "nothing to measure"},
	} {
		ps, fs, err := pick(strings.Split(tc.in, ","))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("pick(%q): %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(ps) != tc.proxies || len(fs) != tc.fails {
			t.Errorf("pick(%q) = %d proxies, %d failovers, %v", tc.in, len(ps), len(fs), err)
		}
	}
}

func TestHAProxyConf(t *testing.T) {
	got := haproxyConf("10.77.14.100", 80, map[string]string{"node2": "10.77.14.12", "node1": "10.77.14.11"})
	for _, want := range []string{
		"\tmode tcp\n",
		"\tbind 10.77.14.100:80\n",
		"\tbalance leastconn\n",
		"\tserver node1 10.77.14.11:80 check inter 1s fall 1 rise 1\n\tserver node2 10.77.14.12:80 check",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", want, got)
		}
	}
}

func TestKeepalivedConf(t *testing.T) {
	got := keepalivedConf("node2", "host0", "10.77.14.100/24", keepalivedPriority(2))
	for _, want := range []string{"router_id node2\n", "interface host0\n", "advert_int 1\n", "priority 100\n", "10.77.14.100/24 dev host0\n", "state BACKUP\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, got)
		}
	}
	if keepalivedPriority(1) != 150 || keepalivedPriority(3) != 50 {
		t.Errorf("priorities %d..%d, want 150..50", keepalivedPriority(1), keepalivedPriority(3))
	}
	if strings.Contains(got, "nopreempt") || strings.Contains(got, "garp") {
		t.Errorf("keepalived.conf changes a default:\n%s", got)
	}
}

func TestBackendUnit(t *testing.T) {
	got := backendUnitText("10.77.14.12")
	if !strings.Contains(got, "ExecStart=/usr/local/bin/lvsbackend -listen 10.77.14.12:80 -listen :8000\n") {
		t.Errorf("unit:\n%s", got)
	}
}

func TestFailoverSummaryAndRender(t *testing.T) {
	f := failoverResult{label: "keepalived", kills: []killResult{
		{victim: "node3", ok: true, took: 3600 * time.Millisecond, newHolder: "node2"},
		{victim: "node2", ok: true, took: 3400 * time.Millisecond, newHolder: "node3"},
		{victim: "node3", ok: false},
	}}
	p50, p99, worst, ok, failed := f.summary()
	if p50 != 3400*time.Millisecond || p99 != 3600*time.Millisecond || worst != 3600*time.Millisecond || ok != 2 || failed != 1 {
		t.Fatalf("summary = %v %v %v %d %d", p50, p99, worst, ok, failed)
	}
	var row throughputRow
	row.label = "HAProxy"
	row.requests, row.elapsed, row.rounds, row.latencies = 1000, time.Second, []float64{1000}, []time.Duration{time.Millisecond}
	out := render(results{params: params{conns: 64, rounds: 1, duration: time.Second, timeout: 30 * time.Second}, sides: []string{"haproxy", "keepalived"},
		throughput: []throughputRow{row}, failover: []failoverResult{f}})
	lvsd := failoverResult{name: "lvsd", kills: []killResult{{ok: true, took: 900 * time.Millisecond}, {ok: true, leader: true, took: 5 * time.Second}}}
	f.name = "keepalived"
	row.name = "haproxy"
	lrow := throughputRow{name: "lvsd", label: "lvsd", requests: 950, elapsed: time.Second}
	withLvsd := render(results{throughput: []throughputRow{row, lrow}, failover: []failoverResult{f, lvsd}})
	for _, want := range []string{
		"HAProxy's requests/s: **met** (95%)",
		"not Consul's Raft leader: **met** (0.90 s over 1 such kills)",
		"faster than keepalived's: **missed** (p50 0.90 s against 3.40 s, p99 5.00 s against 3.60 s)",
	} {
		if !strings.Contains(withLvsd, want) {
			t.Errorf("render with lvsd lacks %q:\n%s", want, withLvsd)
		}
	}
	for _, want := range []string{"requests/s: not measured in this run", "| HAProxy | 1000 | 1000 | 1.0 ms | 1.0 ms | 0 |", "**p50 3.40 s, p99 3.60 s**", "| 3 | node3 | false | **no answer** |  | false | 0 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
}

func TestLvsdSection(t *testing.T) {
	got := lvsdSection("10.77.14.100/24")
	want := "lvsd:\n  vips:\n    - address: 10.77.14.100/24\n      interface: host0\n  ports:\n    - port: tcp/80\n  forwarding: proxy\n"
	if got != want {
		t.Fatalf("lvsd's section:\n%s\nwant:\n%s", got, want)
	}
	if names := sideNames(); strings.Join(names, ",") != "haproxy,keepalived,lvsd" {
		t.Fatalf("sideNames() = %v", names)
	}
}

func TestRenderJoins(t *testing.T) {
	out := render(results{joins: []time.Duration{300 * time.Millisecond, 400 * time.Millisecond, 1200 * time.Millisecond}})
	for _, want := range []string{"**p50 400.0 ms, p99 1200.0 ms**, worst 1200.0 ms, over 3 starts", "routed to it <= 1 s: **missed** (p99 1200.0 ms over 3)"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
}

func TestAnsweredBy(t *testing.T) {
	for _, tc := range []struct {
		body, node string
		want       bool
	}{
		{"ok blv-node1\n", "node1", true},
		{"ok node2", "node2", true},
		{"ok blv-node11\n", "node1", false},
		{"ok blv-node1\n", "node2", false},
		{"", "node1", false},
	} {
		if got := answeredBy(tc.body, tc.node); got != tc.want {
			t.Errorf("answeredBy(%q, %q) = %v", tc.body, tc.node, got)
		}
	}
}
