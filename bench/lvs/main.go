// Command lvs measures lvsd's data plane and VIP failover in the lab,
// side by side with its peers in the same run:
//
//   - throughput: requests/s and p99 of a small HTTP response through the
//     VIP, with 3 backends (one per node) and 64 keep-alive client
//     connections from the host, for each proxy side on the same director
//     (node1): HAProxy (Debian's package, TCP mode, leastconn) and lvsd's
//     proxy; a row straight to one backend (no proxy) bounds them;
//   - failover: the SIGKILL of the node holding the VIP (lab.Kill, a
//     power loss) to the first successful new connection through the VIP
//     from the host, over -kills kills, for each failover side:
//     keepalived (Debian's package, VRRP, advert_int 1, its defaults) on
//     every node for the same address, and lvsd;
//   - with lvsd: the start of a backend (its listen() on the registered
//     port) to the first new connection through the VIP that it answers,
//     over -joins starts.
//
// The host is the client, on the lab bridge like any machine of the
// nodes' link. A side is a value of proxySide or failoverSide (sides.go);
// lvsd's sides are in lvsd.go. -sides haproxy,keepalived measures the
// peers alone.
//
//	go run ./bench/lvs -dist dist -out bench/lvs/RESULTS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/openssi/openssi/bench/hostinfo"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/bench/lvs/httpload"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

type params struct {
	dist        string
	sides       []string
	conns       int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	kills       int
	joins       int
	timeout     time.Duration
	avoidLeader bool
	settle      time.Duration
	out         string
}

func main() {
	var p params
	var sides string
	flag.StringVar(&p.dist, "dist", "dist", "dist/ with repo/ from `make repo`")
	flag.StringVar(&sides, "sides", "haproxy,lvsd,keepalived", "the sides to measure, comma-separated: "+strings.Join(sideNames(), ", "))
	flag.IntVar(&p.conns, "conns", 64, "client connections of the throughput runs")
	flag.DurationVar(&p.duration, "duration", 10*time.Second, "measured time of each throughput run")
	flag.DurationVar(&p.warmup, "warmup", 2*time.Second, "unmeasured start of each throughput run")
	flag.IntVar(&p.rounds, "rounds", 3, "throughput runs of each proxy side, interleaved")
	flag.IntVar(&p.kills, "kills", 10, "kills of the VIP's holder per failover side")
	flag.IntVar(&p.joins, "joins", 10, "with lvsd: backend starts timed to their first connection through the VIP")
	flag.DurationVar(&p.timeout, "timeout", 30*time.Second, "longest wait for the VIP to answer again after a kill")
	flag.DurationVar(&p.settle, "settle", 6*time.Second, "how long the VIP must stay on one node, answering, before a kill")
	flag.BoolVar(&p.avoidLeader, "avoid-leader", true, "move Consul's Raft leadership off the VIP's holder before each kill")
	flag.StringVar(&p.out, "out", "", "write the results as Markdown here")
	flag.Parse()
	p.sides = strings.Split(sides, ",")
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench/lvs:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

const (
	nodes    = 3
	subnet   = "10.77.14"
	director = "node1" // of the throughput runs
	// servicePort is the VIP's port a proxy forwards, and the port every
	// backend serves on its node's own address (lvsd's registered port).
	servicePort = 80
	// anyPort is where every backend also listens on all addresses, so
	// that whichever node holds the VIP answers on it directly: the
	// failover probe of a side that moves the address only (keepalived).
	anyPort = 8000
	// backendBin is the backend inside the nodes.
	backendBin  = "/usr/local/bin/lvsbackend"
	backendUnit = "bench-lvs-backend.service"
)

// bench is the lab and what the bench knows of it.
type bench struct {
	l     *lab.Lab
	p     params
	names []string
	ip    map[string]string
	vip   netip.Prefix
	notes []string
}

func (b *bench) vipAddr(port int) string {
	return netip.AddrPortFrom(b.vip.Addr(), uint16(port)).String()
}

func run(p params) error {
	proxies, failovers, err := pick(p.sides)
	if err != nil {
		return err
	}
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ := filepath.Abs(p.dist)
	dir, err := os.MkdirTemp("", "openssi-bench-lvs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	backend := filepath.Join(dir, "lvsbackend")
	build := exec.Command("go", "build", "-o", backend, "./bench/lvs/lvsbackend")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build lvsbackend: %v: %s", err, out)
	}
	l, err := lab.Open(lab.Options{Dir: filepath.Join(dir, "lab"), Prefix: "blv", Subnet: subnet, Dist: dist, Consul: consul, Log: os.Stderr})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer l.Down(ctx)
	start := time.Now()
	loadBefore := hostinfo.LoadAvg()
	if err := l.Up(ctx, nodes); err != nil {
		return err
	}
	b := &bench{l: l, p: p, ip: map[string]string{}, vip: netip.MustParsePrefix(subnet + ".100/24")}
	for _, n := range l.State().Nodes {
		b.names = append(b.names, n.Name)
		b.ip[n.Name] = n.IP
	}
	if err := b.installBackends(ctx, backend); err != nil {
		return err
	}
	res := results{sides: p.sides}
	if len(proxies) > 0 {
		if res.throughput, err = b.throughput(ctx, proxies); err != nil {
			return err
		}
	}
	if p.joins > 0 && slices.ContainsFunc(p.sides, func(s string) bool { return strings.TrimSpace(s) == "lvsd" }) {
		if res.joins, err = b.joins(ctx, p.joins); err != nil {
			res.joinsFailure = err.Error()
			logf("listen to first routed connection: %v", err)
		}
	}
	for _, f := range failovers {
		k, err := b.failover(ctx, f)
		if err != nil {
			return err
		}
		res.failover = append(res.failover, k)
	}
	kernel, _ := l.Exec(ctx, "node1", "uname", "-r")
	res.machine = fmt.Sprintf("%d cores (%s), kernel %s, Go %s; the host's load average (1, 5, 15 min) %s at the start and %s at the end",
		runtime.NumCPU(), hostinfo.CPUModel(), strings.TrimSpace(kernel), runtime.Version(), loadBefore, hostinfo.LoadAvg())
	res.took = time.Since(start)
	res.notes = b.notes
	res.params = p
	report := render(res)
	fmt.Print(report)
	if p.out != "" {
		return os.WriteFile(p.out, []byte(report), 0o644)
	}
	return nil
}

// backendUnitText runs the backend on node's address at servicePort and on
// every address at anyPort.
func backendUnitText(ip string) string {
	return fmt.Sprintf(`[Unit]
Description=bench/lvs backend
After=network-online.target

[Service]
ExecStart=%s -listen %s:%d -listen :%d
Restart=always
RestartSec=100ms

[Install]
WantedBy=multi-user.target
`, backendBin, ip, servicePort, anyPort)
}

// installBackends copies the backend into every node, with a unit that is
// started now and at every boot (a killed node comes back serving).
func (b *bench) installBackends(ctx context.Context, bin string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	for _, name := range b.names {
		files := []file{
			{backendBin, data, 0o755},
			{"/etc/systemd/system/" + backendUnit, []byte(backendUnitText(b.ip[name])), 0o644},
		}
		if err := b.write(name, files...); err != nil {
			return err
		}
		if err := b.enableOnDisk(name, backendUnit); err != nil {
			return err
		}
	}
	if err := b.onEvery(ctx, "systemctl daemon-reload && systemctl start "+backendUnit); err != nil {
		return err
	}
	for _, name := range b.names {
		addr := fmt.Sprintf("%s:%d", b.ip[name], servicePort)
		if err := lab.Poll(ctx, 30*time.Second, "the backend on "+name, func() string {
			if err := httpload.Get(ctx, addr, "/", time.Second); err != nil {
				return err.Error()
			}
			return ""
		}); err != nil {
			return err
		}
	}
	return nil
}

type file struct {
	path    string
	content []byte
	mode    os.FileMode
}

// write puts files on a node's disk.
func (b *bench) write(node string, files ...file) error {
	n, err := b.l.State().Node(node)
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(n.Root(), f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.content, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// enableOnDisk links unit into multi-user.target.wants on node's disk, as
// systemctl enable does, so that it starts at the node's next boot.
func (b *bench) enableOnDisk(node, unit string) error {
	n, err := b.l.State().Node(node)
	if err != nil {
		return err
	}
	link := filepath.Join(n.Root(), "etc/systemd/system/multi-user.target.wants", unit)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	target := "/lib/systemd/system/" + unit
	if _, err := os.Stat(filepath.Join(n.Root(), "etc/systemd/system", unit)); err == nil {
		target = "/etc/systemd/system/" + unit
	}
	_ = os.Remove(link)
	return os.Symlink(target, link)
}

// disableOnDisk undoes enableOnDisk.
func (b *bench) disableOnDisk(node, unit string) error {
	n, err := b.l.State().Node(node)
	if err != nil {
		return err
	}
	err = os.Remove(filepath.Join(n.Root(), "etc/systemd/system/multi-user.target.wants", unit))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// onEvery runs a shell script on every node at once.
func (b *bench) onEvery(ctx context.Context, script string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(b.names))
	for i, n := range b.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := b.l.Exec(ctx, n, "sh", "-ec", script); err != nil {
				errs[i] = fmt.Errorf("%s: %v: %s", n, err, out)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// holders are the running nodes that have the VIP on their link.
func (b *bench) holders(ctx context.Context) []string {
	var out []string
	for _, n := range b.l.Running() {
		o, err := b.l.Exec(ctx, n, "ip", "-o", "addr", "show", "dev", lab.NodeIface, "to", b.vip.Addr().String()+"/32")
		if err == nil && strings.TrimSpace(o) != "" {
			out = append(out, n)
		}
	}
	return out
}

// throughput runs every proxy side -rounds times, interleaved, and a run
// straight to node2's backend as the bound.
func (b *bench) throughput(ctx context.Context, sides []proxySide) ([]throughputRow, error) {
	rows := make([]throughputRow, len(sides)+1)
	rows[0].label = fmt.Sprintf("no proxy: straight to node2's backend (%s:%d)", b.ip["node2"], servicePort)
	for i, s := range sides {
		rows[i+1].name, rows[i+1].label = s.name(), s.label()
	}
	o := httpload.Options{Conns: b.p.conns, Duration: b.p.duration, Warmup: b.p.warmup}
	for round := range b.p.rounds {
		o.Addr = fmt.Sprintf("%s:%d", b.ip["node2"], servicePort)
		logf("round %d: %d connections straight to %s for %s", round+1, o.Conns, o.Addr, o.Duration)
		r, err := httpload.Run(ctx, o)
		if err != nil {
			return nil, err
		}
		rows[0].add(r)
		for i, s := range sides {
			if err := s.start(ctx, b, director); err != nil {
				return nil, fmt.Errorf("%s: start on %s: %w", s.name(), director, err)
			}
			o.Addr = b.vipAddr(servicePort)
			if err := lab.Poll(ctx, 30*time.Second, s.name()+" answering on "+o.Addr, func() string {
				if err := httpload.Get(ctx, o.Addr, "/", time.Second); err != nil {
					return err.Error()
				}
				return ""
			}); err != nil {
				return nil, err
			}
			logf("round %d: %d connections through %s at %s for %s", round+1, o.Conns, s.name(), o.Addr, o.Duration)
			r, err := httpload.Run(ctx, o)
			if serr := s.stop(ctx, b, director); err == nil && serr != nil {
				err = fmt.Errorf("%s: stop: %w", s.name(), serr)
			}
			if err != nil {
				return nil, err
			}
			rows[i+1].add(r)
		}
	}
	return rows, nil
}

// failover kills the VIP's holder -kills times with side running on every
// node, and times each kill to the first successful new connection.
func (b *bench) failover(ctx context.Context, side failoverSide) (failoverResult, error) {
	res := failoverResult{name: side.name(), label: side.label()}
	if err := side.start(ctx, b); err != nil {
		return res, fmt.Errorf("%s: start: %w", side.name(), err)
	}
	addr := b.vipAddr(side.port())
	for k := range b.p.kills {
		victim, err := b.settle(ctx, side, addr)
		if err != nil {
			res.failure = err.Error()
			break
		}
		leader := ""
		if b.p.avoidLeader {
			if err := b.moveLeaderOff(ctx, victim); err != nil {
				logf("Raft leadership stays on %s: %v", victim, err)
			}
		}
		if peers, err := b.l.RaftPeers(ctx); err == nil {
			leader = lab.LeaderOf(peers)
		}
		logf("%s kill %d: %s holds %s (Consul's Raft leader: %s)", side.name(), k+1, victim, b.vip.Addr(), leader)
		t0 := time.Now()
		if err := b.l.Kill(ctx, victim); err != nil {
			return res, err
		}
		kill := killResult{victim: victim, leader: victim == leader}
		deadline := t0.Add(b.p.timeout)
		for {
			if err := httpload.Get(ctx, addr, "/", 250*time.Millisecond); err == nil {
				kill.took = time.Since(t0)
				kill.ok = true
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if h := b.holders(ctx); len(h) > 0 {
			kill.newHolder = strings.Join(h, "+")
		}
		b.checkARP(ctx, &kill)
		logf("%s kill %d: answering again after %s (ok %v), held by %s", side.name(), k+1, kill.took.Round(time.Millisecond), kill.ok, kill.newHolder)
		res.kills = append(res.kills, kill)
		if err := b.l.Start(ctx, victim); err != nil {
			return res, err
		}
		if err := b.l.WaitAllUp(ctx, 3*time.Minute); err != nil {
			return res, err
		}
	}
	if err := side.stop(ctx, b); err != nil {
		return res, fmt.Errorf("%s: stop: %w", side.name(), err)
	}
	return res, nil
}

// checkARP records, once the VIP answers again, whether the host's
// neighbour entry for it names the new holder's MAC (read first: the
// probe's replies would refresh it) and how many nodes answer an ARP
// request for it (one, or two holders answer at once).
func (b *bench) checkARP(ctx context.Context, k *killResult) {
	if !k.ok {
		return
	}
	n, found, err := b.l.HostNeighbor(b.vip.Addr())
	if err == nil && found && !strings.Contains(k.newHolder, "+") && k.newHolder != "" {
		if mac, err := b.l.NodeMAC(ctx, k.newHolder); err == nil {
			k.neighOK = n.MAC == mac
		}
	}
	if macs, err := b.l.WhoHas(b.vip.Addr(), 300*time.Millisecond); err == nil {
		k.arpAnswers = len(macs)
	} else {
		k.arpAnswers = -1
	}
}

// settle waits until every node runs, exactly one holds the VIP, the VIP
// answers and side says it is ready, all of it without a break and with
// the same holder for -settle, and returns the holder. The hold-down
// keeps a kill from landing while the restarted node is still taking the
// VIP back (keepalived's preemption), which would time a failover that
// had already begun.
func (b *bench) settle(ctx context.Context, side failoverSide, addr string) (string, error) {
	var holder string
	var since time.Time
	err := lab.Poll(ctx, 2*time.Minute+b.p.settle, side.name()+" settled", func() string {
		why := func() string {
			if r := b.l.Running(); len(r) != len(b.names) {
				return fmt.Sprintf("running: %v", r)
			}
			h := b.holders(ctx)
			if len(h) != 1 {
				return fmt.Sprintf("VIP held by %v", h)
			}
			if h[0] != holder {
				holder, since = h[0], time.Now()
			}
			if err := httpload.Get(ctx, addr, "/", time.Second); err != nil {
				return err.Error()
			}
			return side.ready(ctx, b)
		}()
		if why != "" {
			holder = ""
			return why
		}
		if held := time.Since(since); held < b.p.settle {
			return fmt.Sprintf("%s has held the VIP for %s only", holder, held.Round(time.Millisecond))
		}
		return ""
	})
	return holder, err
}

// moveLeaderOff makes sure node is not Consul's Raft leader.
func (b *bench) moveLeaderOff(ctx context.Context, node string) error {
	return lab.Poll(ctx, time.Minute, "Raft leadership away from "+node, func() string {
		peers, err := b.l.RaftPeers(ctx)
		if err != nil {
			return err.Error()
		}
		cur := lab.LeaderOf(peers)
		switch cur {
		case "":
			return "no leader"
		case node:
			if out, err := b.l.Exec(ctx, cur, "consul", "operator", "raft", "transfer-leader"); err != nil {
				return fmt.Sprintf("%v: %s", err, out)
			}
			return "leader was " + cur
		}
		return ""
	})
}
