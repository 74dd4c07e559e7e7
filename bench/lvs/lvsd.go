package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/openssi/openssi/client/lvs"
	"github.com/openssi/openssi/lab"
)

// lvsdSection is lvsd's section of openssi.yaml in the bench: the VIP on
// the node's link, servicePort registered, the user-space proxy (the
// lab's kernel has no IPVS), every other setting at its default
// (stop_timeout 500ms, watch_every 200ms).
func lvsdSection(vip string) string {
	return fmt.Sprintf("lvsd:\n  vips:\n    - address: %s\n      interface: %s\n  ports:\n    - port: tcp/%d\n  forwarding: proxy\n",
		vip, lab.NodeIface, servicePort)
}

// lvsdConfigure appends lvsd's section to node's openssi.yaml (on its
// disk, so that a killed node boots with it).
func (b *bench) lvsdConfigure(node string) error {
	n, err := b.l.State().Node(node)
	if err != nil {
		return err
	}
	p := filepath.Join(n.Root(), "etc/openssi/openssi.yaml")
	old, err := readFile(p)
	if err != nil {
		return err
	}
	if strings.Contains(old, "\nlvsd:\n") {
		return nil
	}
	return b.write(node, file{"/etc/openssi/openssi.yaml", []byte(old + lvsdSection(b.vip.String())), 0o644})
}

// lvsdUnconfigure removes lvsd's section again.
func (b *bench) lvsdUnconfigure(node string) error {
	n, err := b.l.State().Node(node)
	if err != nil {
		return err
	}
	p := filepath.Join(n.Root(), "etc/openssi/openssi.yaml")
	old, err := readFile(p)
	if err != nil {
		return err
	}
	cut, _, _ := strings.Cut(old, lvsdSection(b.vip.String()))
	return b.write(node, file{"/etc/openssi/openssi.yaml", []byte(cut), 0o644})
}

// lvsdStatus is `ssi vip -o json` on node.
func (b *bench) lvsdStatus(ctx context.Context, node string) (lvs.Status, error) {
	out, err := b.l.Exec(ctx, node, "ssi", "vip", "-o", "json")
	if err != nil {
		return lvs.Status{}, fmt.Errorf("ssi vip on %s: %v: %s", node, err, strings.TrimSpace(out))
	}
	var st lvs.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return lvs.Status{}, fmt.Errorf("ssi vip on %s: %w", node, err)
	}
	return st, nil
}

// lvsdPool says why node's lvsd is not the director forwarding
// servicePort to want backends ("" when it is).
func (b *bench) lvsdPool(ctx context.Context, node string, want int) string {
	st, err := b.lvsdStatus(ctx, node)
	if err != nil {
		return err.Error()
	}
	if !st.Directing {
		return fmt.Sprintf("%s is not the director (node %d is)", node, st.Director)
	}
	for _, p := range st.Ports {
		if p.Port == fmt.Sprintf("tcp/%d", servicePort) {
			if len(p.Backends) != want {
				return fmt.Sprintf("%d backend(s) for %s, want %d", len(p.Backends), p.Port, want)
			}
			return ""
		}
	}
	return fmt.Sprintf("tcp/%d is not registered", servicePort)
}

// lvsdStart stops lvsd on every node (it runs from the boot on, without
// a VIP, and one of them holds the director's lock), configures it and
// starts it: first on first alone, so that it becomes the director, then
// on the others.
func (b *bench) lvsdStart(ctx context.Context, first string) error {
	if err := b.onEvery(ctx, "systemctl stop openssi-lvsd"); err != nil {
		return err
	}
	for _, n := range b.names {
		if err := b.lvsdConfigure(n); err != nil {
			return err
		}
	}
	if out, err := b.l.Exec(ctx, first, "sh", "-c", startLvsd); err != nil {
		return fmt.Errorf("%s: start lvsd: %v: %s", first, err, out)
	}
	if err := lab.Poll(ctx, time.Minute, "lvsd's director on "+first, func() string {
		st, err := b.lvsdStatus(ctx, first)
		if err != nil {
			return err.Error()
		}
		if !st.Directing {
			return fmt.Sprintf("the director is node %d", st.Director)
		}
		return ""
	}); err != nil {
		return err
	}
	for _, n := range b.names {
		if n == first {
			continue
		}
		if out, err := b.l.Exec(ctx, n, "sh", "-c", startLvsd); err != nil {
			return fmt.Errorf("%s: start lvsd: %v: %s", n, err, out)
		}
	}
	return lab.Poll(ctx, time.Minute, "lvsd's pool on "+first, func() string { return b.lvsdPool(ctx, first, len(b.names)) })
}

// lvsdStop stops lvsd everywhere (its ExecStopPost takes the VIP of its
// section off the node), takes its section off and starts it again,
// holding nothing.
func (b *bench) lvsdStop(ctx context.Context) error {
	if err := b.onEvery(ctx, "systemctl stop openssi-lvsd"); err != nil {
		return err
	}
	for _, n := range b.names {
		if err := b.lvsdUnconfigure(n); err != nil {
			return err
		}
	}
	return b.onEvery(ctx, startLvsd)
}

// startLvsd starts lvsd, once more after a second if the start failed:
// right after a stop, systemd in an nspawn node may fail to set up the
// unit's cgroup (status 219/CGROUP), a fault of the lab, not of lvsd.
const startLvsd = "systemctl start openssi-lvsd || { sleep 1; systemctl reset-failed openssi-lvsd; systemctl start openssi-lvsd; }"

// lvsdSide is openssi-lvsd: its user-space proxy on the director for the
// throughput runs, its director election for the failover runs.
type lvsdSide struct{}

func (lvsdSide) name() string { return "lvsd" }
func (lvsdSide) label() string {
	return "lvsd's user-space proxy (forwarding: proxy), weighted least-connections, director node1"
}

func (lvsdSide) start(ctx context.Context, b *bench, director string) error {
	return b.lvsdStart(ctx, director)
}

func (lvsdSide) stop(ctx context.Context, b *bench, _ string) error { return b.lvsdStop(ctx) }

// lvsdFailover is the failover side: lvsd on every node with its
// defaults (stop_timeout 500ms), the probe on the VIP's servicePort,
// which the director's proxy forwards.
type lvsdFailover struct{ lvsdSide }

func (lvsdFailover) label() string {
	return "lvsd, director elected with a dlmd lock, stop_timeout 500ms (its default), the probe through its proxy"
}

func (lvsdFailover) port() int { return servicePort }

func (lvsdFailover) start(ctx context.Context, b *bench) error {
	b.notes = append(b.notes, fmt.Sprintf("lvsd's section of openssi.yaml on every node:\n\n```\n%s```\n", lvsdSection(b.vip.String())))
	return b.lvsdStart(ctx, b.names[0])
}

// ready: every running node's lvsd is active, and the director forwards
// to every running node.
func (lvsdFailover) ready(ctx context.Context, b *bench) string {
	run := b.l.Running()
	var director string
	for _, n := range run {
		if out, err := b.l.Exec(ctx, n, "systemctl", "is-active", "openssi-lvsd"); err != nil {
			return fmt.Sprintf("lvsd on %s: %s", n, strings.TrimSpace(out))
		}
		if st, err := b.lvsdStatus(ctx, n); err == nil && st.Directing {
			director = n
		}
	}
	if director == "" {
		return "no lvsd directs"
	}
	return b.lvsdPool(ctx, director, len(run))
}

func (lvsdFailover) stop(ctx context.Context, b *bench) error { return b.lvsdStop(ctx) }

// joins measures, with lvsd directing from node1 and every backend
// stopped, the time from the start of one node's backend (the
// systemctl start that makes it listen on servicePort) to the first new
// connection through the VIP that it answers, n times, each node's
// backend in turn.
func (b *bench) joins(ctx context.Context, n int) ([]time.Duration, error) {
	if err := b.lvsdStart(ctx, director); err != nil {
		return nil, err
	}
	defer func() {
		if err := b.onEvery(ctx, "systemctl start "+backendUnit); err != nil {
			logf("restart the backends: %v", err)
		}
		if err := b.lvsdStop(ctx); err != nil {
			logf("stop lvsd: %v", err)
		}
	}()
	var out []time.Duration
	addr := b.vipAddr(servicePort)
	for i := range n {
		if err := b.onEvery(ctx, "systemctl stop "+backendUnit); err != nil {
			return out, err
		}
		if err := lab.Poll(ctx, 30*time.Second, "an empty pool", func() string { return b.lvsdPool(ctx, director, 0) }); err != nil {
			return out, err
		}
		node := b.names[i%len(b.names)]
		t0 := time.Now()
		if out, err := b.l.Exec(ctx, node, "systemctl", "start", backendUnit); err != nil {
			return nil, fmt.Errorf("%s: start the backend: %v: %s", node, err, out)
		}
		var took time.Duration
		for took == 0 {
			if body, err := getBody(ctx, addr, 250*time.Millisecond); err == nil && answeredBy(body, node) {
				took = time.Since(t0)
				break
			}
			if time.Since(t0) > 30*time.Second {
				return out, fmt.Errorf("%s's backend not reached through the VIP after 30s", node)
			}
			time.Sleep(10 * time.Millisecond)
		}
		logf("listen %d: %s's backend answered through the VIP %s after its start", i+1, node, took.Round(time.Millisecond))
		out = append(out, took)
	}
	slices.Sort(out)
	return out, nil
}

// getBody is one GET of / on a new connection to addr: the body.
func getBody(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", addr, resp.Status)
	}
	return string(body), nil
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

// answeredBy reports whether body, lvsbackend's "ok HOSTNAME", comes from
// node: the lab names its machines PREFIX-nodeN.
func answeredBy(body, node string) bool {
	f := strings.Fields(body)
	return len(f) == 2 && f[0] == "ok" && (f[1] == node || strings.HasSuffix(f[1], "-"+node))
}
