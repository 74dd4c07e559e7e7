// Command failover measures, in the lab, how long a singleton service is
// gone when the node running it dies: the time from the SIGKILL of the
// whole node (lab.Kill, a power loss) to the service answering again from
// another node, for OpenSSI's init singleton (initfailover) and, side by
// side in the same lab and the same kills, its peers: the usual Consul
// recipe (`consul lock` wrapping the same service on every node) and
// Pacemaker with Corosync from Debian bookworm; an application monitored
// by openssi-keepalived is measured as OpenSSI's second variant. It also
// measures the crash of OpenSSI's services (SIGKILL of the process) to
// their answering again in place.
//
// Every variant runs the same small HTTP service (test/e2e/singleton),
// which answers with its node's name, on a port of its own; a witness on
// the host polls every survivor's port every 20 ms and records which node
// answers when. Every variant runs at once; each kill takes the node of
// the variant whose quota misses the most kills, and every variant that
// ran there is measured. Before each kill Consul's Raft leadership is
// moved onto or away from the victim, as the quota asks, so that both
// kinds of kill are measured for each variant.
//
// A variant is one entry of variants() and its setup.
//
//	go run ./bench/failover -dist dist -out bench/failover/RESULTS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/openssi/openssi/bench/hostinfo"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/bench/failover/recovery"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

type params struct {
	dist      string
	nodes     int
	quota     recovery.Quota
	crashes   int // per OpenSSI variant
	timeout   time.Duration
	gap       time.Duration
	pollEvery time.Duration
	out       string
}

func main() {
	var p params
	flag.StringVar(&p.dist, "dist", "dist", "dist/ with repo/ from `make repo`")
	flag.IntVar(&p.nodes, "nodes", 3, "nodes of the lab (all Consul servers up to 3)")
	flag.IntVar(&p.quota.NotLeader, "kills", 10, "kills per variant of a node that is not Consul's Raft leader")
	flag.IntVar(&p.quota.Leader, "leader-kills", 4, "kills per variant of Consul's Raft leader")
	flag.IntVar(&p.crashes, "crashes", 20, "SIGKILLs of each OpenSSI service's own process")
	flag.DurationVar(&p.timeout, "timeout", time.Minute, "longest wait for a service to answer again")
	flag.DurationVar(&p.gap, "gap", 20*time.Second, "shortest time between two kills (more than Consul's 15 s lock delay)")
	flag.DurationVar(&p.pollEvery, "poll", 20*time.Millisecond, "the witness's sampling period")
	flag.StringVar(&p.out, "out", "", "write the results as Markdown here")
	flag.Parse()
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench/failover:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// singletonBin is the test service inside the nodes.
const singletonBin = "/usr/local/bin/e2e-singleton"

// variant is one way of keeping the service running on exactly one node.
type variant struct {
	name  string // the key of its kills
	label string // its row in the tables
	port  string
	// setup installs the variant on every node (its files are already
	// written); it runs once, after the lab is up.
	setup func(ctx context.Context, b *bench) error
	// ready reports why the variant is not ready for a kill ("" when it
	// is), beyond answering on one node: e.g. Pacemaker not seeing every
	// node online yet.
	ready func(ctx context.Context, b *bench) string
	// ours: one of OpenSSI's, held to the targets and the base of
	// the peers' ratios; the others are the peers.
	ours bool
	// crash is the systemd unit whose main process the crash measurement
	// SIGKILLs ("" for none), and restart says what restarts it.
	crash, restart string
}

// variants are measured side by side: OpenSSI's (ours) against the
// peers.
func variants() []variant {
	return []variant{
		{name: "init", label: "OpenSSI init singleton (initfailover)", port: "18080", setup: setupInit,
			ours: true, crash: "bench-init.service", restart: "systemd's `Restart=always`"},
		{name: "keepalive", label: "OpenSSI monitored app (openssi-keepalived)", port: "18083", setup: setupKeepalive,
			ours: true, crash: keepaliveUnit, restart: "openssi-keepalived's restart in place"},
		{name: "consul-lock", label: "`consul lock` on every node", port: "18081", setup: setupConsulLock},
		{name: "pacemaker", label: "Pacemaker + Corosync (Debian bookworm)", port: "18082", setup: setupPacemaker, ready: pacemakerReady},
	}
}

// ours and peers split vs into OpenSSI's variants and the others.
func ours(vs []variant) (o, peers []variant) {
	for _, v := range vs {
		if v.ours {
			o = append(o, v)
		} else {
			peers = append(peers, v)
		}
	}
	return o, peers
}

// bench is the lab and what the bench knows of it.
type bench struct {
	l     *lab.Lab
	p     params
	vs    []variant
	names []string
	ip    map[string]string
	notes []string // how each variant was set up, for the report
	// rejoins counts the restarted nodes whose Pacemaker did not see the
	// cluster again by itself (see rejoin).
	rejoins []string
	failure string // why the kills stopped early, if they did
}

func run(p params) error {
	if p.nodes < 3 {
		return fmt.Errorf("-nodes %d: want at least 3 (a majority must survive a kill)", p.nodes)
	}
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ := filepath.Abs(p.dist)
	dir, err := os.MkdirTemp("", "openssi-bench-failover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "singleton")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/e2e/singleton")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the singleton: %v: %s", err, out)
	}
	l, err := lab.Open(lab.Options{Dir: filepath.Join(dir, "lab"), Prefix: "bfo", Subnet: "10.77.13", Dist: dist, Consul: consul, Log: os.Stderr})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer l.Down(ctx)
	start := time.Now()
	loadBefore := hostinfo.LoadAvg()
	if err := l.Up(ctx, p.nodes); err != nil {
		return err
	}
	b := &bench{l: l, p: p, vs: variants(), ip: map[string]string{}}
	for _, n := range l.State().Nodes {
		b.names = append(b.names, n.Name)
		b.ip[n.Name] = n.IP
	}
	if err := b.install(ctx, bin); err != nil {
		return err
	}
	for _, v := range b.vs {
		logf("setting up %s", v.name)
		if err := v.setup(ctx, b); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	if _, err := b.settle(ctx); err != nil {
		return err
	}
	// On an error, report what was measured, with the error, before
	// giving up.
	crashes, crashErr := b.crashes(ctx)
	var kills []recovery.Kill
	var log []killLog
	var killErr error
	if crashErr == nil {
		kills, log, killErr = b.kills(ctx)
	}
	if killErr = errors.Join(crashErr, killErr); killErr != nil {
		b.failure = killErr.Error()
	}
	machine := fmt.Sprintf("kernel %s; the host's load average (1, 5, 15 min) %s at the start and %s at the end", kernel(), loadBefore, hostinfo.LoadAvg())
	report := render(b, kills, crashes, log, machine, time.Since(start))
	fmt.Print(report)
	if p.out != "" {
		if err := os.WriteFile(p.out, []byte(report), 0o644); err != nil {
			return err
		}
	}
	return killErr
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// install copies the service into every node and writes every variant's
// units and configuration; setup then enables them.
func (b *bench) install(ctx context.Context, bin string) error {
	svc, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	token := b.l.State().Consul.ManagementToken
	var nodelist strings.Builder
	for i, n := range b.names {
		fmt.Fprintf(&nodelist, "\tnode {\n\t\tname: %s\n\t\tnodeid: %d\n\t\tring0_addr: %s\n\t}\n", n, i+1, b.ip[n])
	}
	for _, name := range b.names {
		n, err := b.l.State().Node(name)
		if err != nil {
			return err
		}
		files := []struct {
			rel     string
			content []byte
			mode    os.FileMode
		}{
			{strings.TrimPrefix(singletonBin, "/"), svc, 0o755},
			{"etc/systemd/system/bench-init.service", []byte(initUnit(name)), 0o644},
			{"etc/systemd/system/bench-consul-lock.service", []byte(consulLockUnit(name, token)), 0o600},
			{"etc/systemd/system/bench-pcmk.service", []byte(pacemakerUnit(name)), 0o644},
			{"etc/corosync/corosync.conf", []byte(corosyncConf(nodelist.String())), 0o644},
		}
		for _, f := range files {
			p := filepath.Join(n.Root(), f.rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, f.content, f.mode); err != nil {
				return err
			}
		}
	}
	return b.onEvery(ctx, "systemctl daemon-reload")
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

// initStopTimeout is initfailover.stop_timeout in the bench: the
// shortest allowed (the default, 10s, adds 9 s to every failover after a
// crash of the init node), as in TestInitfailover.
const initStopTimeout = "1s"

func initUnit(node string) string {
	return `[Unit]
Description=bench/failover: the OpenSSI init singleton (HTTP, answers its node's name)
PartOf=openssi-init.target

[Service]
ExecStart=` + singletonBin + ` serve :18080 ` + node + `
Restart=always
TimeoutStopSec=500ms

[Install]
WantedBy=openssi-init.target
`
}

func setupInit(ctx context.Context, b *bench) error {
	b.notes = append(b.notes, "OpenSSI: the service is a unit `PartOf=` and `WantedBy=openssi-init.target` with `Restart=always` (systemd restarts it in place after a crash; its other settings at systemd's defaults), `initfailover.stop_timeout: "+initStopTimeout+"` (the shortest allowed; the default 10 s adds 9 s to every failover after a node's death), every other setting at its default.")
	return b.onEvery(ctx, `grep -q '^initfailover:' /etc/openssi/openssi.yaml || printf 'initfailover:\n  stop_timeout: `+initStopTimeout+`\n' >> /etc/openssi/openssi.yaml
systemctl enable -q bench-init.service
systemctl restart openssi-initfailover`)
}

// The keepalive variant: an application declared in
// /etc/openssi/keepalive.d on every node, the first node its primary and
// every other node a backup, as in TestKeepalive.
const (
	keepaliveApp  = "bench"
	keepaliveUnit = "openssi-keepalive-" + keepaliveApp + ".service"
	// keepaliveStopTimeout is keepalived.stop_timeout: the shortest
	// allowed, as initfailover's (the default, 10s, adds 9 s to every
	// move after a node's death).
	keepaliveStopTimeout = "1s"
	// keepaliveWithin is the declaration's within: crashes 3 s apart
	// must each be a first failure, restarted in place (with the
	// default, 60s, the third would move the application).
	keepaliveWithin = "1s"
)

func keepaliveDecl(node string, primary int, backups []int) string {
	var bs []string
	for _, n := range backups {
		bs = append(bs, strconv.Itoa(n))
	}
	return `command: [` + singletonBin + `, serve, ":18083", "` + node + `"]
user: nobody
primary: ` + strconv.Itoa(primary) + `
backup: [` + strings.Join(bs, ", ") + `]
within: ` + keepaliveWithin + `
check: "http:18083/"
`
}

func setupKeepalive(ctx context.Context, b *bench) error {
	b.notes = append(b.notes, "openssi-keepalived: the service declared in /etc/openssi/keepalive.d/"+keepaliveApp+".yaml on every node, as TestKeepalive does: user `nobody`, the first node its primary and the two others its backups, the check `http:18083/`, `within: "+keepaliveWithin+"` (so that crashes 3 s apart are each a first failure, restarted in place; with the default 60 s the third would move it), `keepalived.stop_timeout: "+keepaliveStopTimeout+"` (the shortest allowed, as initfailover's), every other setting at its default (placement `last_node`, 3 retries, the check every 2 s).")
	v, err := b.l.View(ctx, b.names[0])
	if err != nil {
		return err
	}
	num := map[string]int{}
	for _, n := range v.Nodes {
		num[n.Name] = n.Number
	}
	var backups []int
	for _, n := range b.names[1:] {
		if num[n] == 0 {
			return fmt.Errorf("%s has no node number in %s's view", n, b.names[0])
		}
		backups = append(backups, num[n])
	}
	for _, name := range b.names {
		n, err := b.l.State().Node(name)
		if err != nil {
			return err
		}
		p := filepath.Join(n.Root(), "etc/openssi/keepalive.d", keepaliveApp+".yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(keepaliveDecl(name, num[b.names[0]], backups)), 0o644); err != nil {
			return err
		}
	}
	return b.onEvery(ctx, `grep -q '^keepalived:' /etc/openssi/openssi.yaml || printf 'keepalived:
  stop_timeout: `+keepaliveStopTimeout+`
' >> /etc/openssi/openssi.yaml
systemctl restart openssi-keepalived`)
}

// consulLockKey is the KV prefix of the consul lock variant.
const consulLockKey = "bench/failover/consul-lock"

func consulLockUnit(node, token string) string {
	return `[Unit]
Description=bench/failover: the service under consul lock (the usual Consul recipe)
Wants=consul.service
After=consul.service
StartLimitIntervalSec=0

[Service]
Environment=CONSUL_HTTP_ADDR=unix://` + lab.ConsulSocket + `
Environment=CONSUL_HTTP_TOKEN=` + token + `
ExecStart=/usr/local/bin/consul lock -name bench-failover ` + consulLockKey + ` ` + singletonBin + ` serve :18081 ` + node + `
Restart=always
RestartSec=1s

[Install]
WantedBy=multi-user.target
`
}

func setupConsulLock(ctx context.Context, b *bench) error {
	b.notes = append(b.notes, "Consul: `consul lock "+consulLockKey+" <service>` as a unit on every node (`Restart=always`, `RestartSec=1s`), every `consul lock` option at its default: a session with the node's serfHealth check and Consul's default 15 s lock delay, during which the waiters retry every 5 s (the api's DefaultLockRetryTime), so the service is back about 15 to 20 s after Consul declares the node failed; the lab's Consul agents, with the lab's management token (the agents use OpenSSI's tuned gossip profile, so Consul declares a dead node failed faster than with its own defaults).")
	return b.onEvery(ctx, "systemctl enable -q --now bench-consul-lock.service")
}

func pacemakerUnit(node string) string {
	return `[Unit]
Description=bench/failover: the service as a Pacemaker resource (systemd:bench-pcmk)

[Service]
ExecStart=` + singletonBin + ` serve :18082 ` + node + `
`
}

// corosyncConf is Debian's /etc/corosync/corosync.conf with the lab's
// nodes: every totem and quorum setting at corosync's defaults.
func corosyncConf(nodelist string) string {
	return `totem {
	version: 2
	cluster_name: bench
	crypto_cipher: none
	crypto_hash: none
}
logging {
	fileline: off
	to_stderr: yes
	to_logfile: yes
	logfile: /var/log/corosync/corosync.log
	to_syslog: yes
	debug: off
	logger_subsys {
		subsys: QUORUM
		debug: off
	}
}
quorum {
	provider: corosync_votequorum
}
nodelist {
` + nodelist + `}
`
}

func setupPacemaker(ctx context.Context, b *bench) error {
	b.notes = append(b.notes, "Pacemaker: Debian's corosync.conf with the lab's nodes in its nodelist (knet, every totem timing at its default), corosync and pacemaker enabled on every node, and the service a resource `systemd:bench-pcmk` with no operation of its own (so no monitor: the node's death is what moves it). With corosync's defaults a dead node is declared lost after the token timeout, 3000 ms + 650 ms for each node beyond two (3650 ms here), and the new membership forms after the consensus timeout (1.2 × token) more; Pacemaker then elects a new DC if the dead node was it, and starts the resource. One cluster property is changed: `stonith-enabled=false`, since the lab has no fencing device and Pacemaker starts no resource without one (\"Resource start-up disabled since no STONITH resources have been defined\").")
	if err := b.onEvery(ctx, "systemctl enable -q --now corosync.service pacemaker.service"); err != nil {
		return err
	}
	if err := lab.Poll(ctx, 3*time.Minute, "Pacemaker sees every node online", func() string { return pacemakerReady(ctx, b) }); err != nil {
		return err
	}
	first := b.names[0]
	for _, args := range [][]string{
		{"crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", "false"},
		{"cibadmin", "--create", "--scope", "resources", "--xml-text", `<primitive id="bench-pcmk" class="systemd" type="bench-pcmk"/>`},
	} {
		if out, err := b.l.Exec(ctx, first, args...); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
	}
	return nil
}

// pacemakerReady is "" once Pacemaker sees every node online (crm_mon
// on the first running node).
func pacemakerReady(ctx context.Context, b *bench) string {
	running := b.l.Running()
	if len(running) == 0 {
		return "no node running"
	}
	out, err := b.l.Exec(ctx, running[0], "crm_mon", "-1")
	if err != nil {
		return "crm_mon: " + err.Error()
	}
	if on := crmOnline(out); len(on) != len(b.names) {
		return fmt.Sprintf("crm_mon on %s: online %v", running[0], on)
	}
	return ""
}

// crmOnline lists the nodes crm_mon -1 says are online.
func crmOnline(out string) []string {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		rest, ok := strings.CutPrefix(line, "Online:")
		if !ok {
			continue
		}
		rest = strings.Trim(strings.TrimSpace(rest), "[]")
		f := strings.Fields(rest)
		sort.Strings(f)
		return f
	}
	return nil
}

// crmDC is the node crm_mon -1 names the designated controller.
func crmDC(out string) string {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if rest, ok := strings.CutPrefix(line, "Current DC:"); ok {
			if f := strings.Fields(rest); len(f) > 0 && f[0] != "NONE" {
				return f[0]
			}
		}
	}
	return ""
}

// moveLeader makes node Consul's Raft leader (leader) or not (!leader).
func (b *bench) moveLeader(ctx context.Context, node string, leader bool) error {
	return lab.Poll(ctx, time.Minute, fmt.Sprintf("Raft leadership %s %s", map[bool]string{true: "onto", false: "away from"}[leader], node), func() string {
		peers, err := b.l.RaftPeers(ctx)
		if err != nil {
			return err.Error()
		}
		cur := lab.LeaderOf(peers)
		if cur == "" {
			return "no leader"
		}
		if (cur == node) == leader {
			return ""
		}
		args := []string{"consul", "operator", "raft", "transfer-leader"}
		if leader {
			for _, p := range peers {
				if p.Node == node {
					args = append(args, "-id="+p.ID)
				}
			}
		}
		if out, err := b.l.Exec(ctx, cur, args...); err != nil {
			return fmt.Sprintf("%v: %s", err, out)
		}
		return "leader was " + cur
	})
}

// poll GETs a node's port once.
func poll(c *http.Client, node, url string) recovery.Poll {
	p := recovery.Poll{At: time.Now(), Node: node}
	r, err := c.Get(url)
	if err != nil {
		return p
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 256))
	r.Body.Close()
	p.OK = err == nil && r.StatusCode == http.StatusOK
	p.Body = strings.TrimSpace(string(body))
	return p
}

func client() *http.Client {
	return &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
}

func (b *bench) url(node string, v variant) string {
	return "http://" + b.ip[node] + ":" + v.port + "/"
}

// holders polls every running node's port of every variant once.
func (b *bench) holders() map[string][]string {
	c := client()
	out := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, v := range b.vs {
		for _, n := range b.l.Running() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := poll(c, n, b.url(n, v))
				mu.Lock()
				out[v.name] = append(out[v.name], recovery.Holders([]recovery.Poll{p})...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for _, h := range out {
		sort.Strings(h)
	}
	return out
}

// settle waits until every node is UP, Consul has a leader and every
// voter, each variant is ready and answers on exactly one node, the same
// in two rounds a second apart; it returns each variant's node.
func (b *bench) settle(ctx context.Context) (map[string]string, error) {
	if err := b.l.WaitAllUp(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	var prev, got map[string]string
	err := lab.Poll(ctx, 3*time.Minute, "every variant settled on one node", func() string {
		peers, err := b.l.RaftPeers(ctx)
		if err != nil {
			return err.Error()
		}
		voters := 0
		for _, p := range peers {
			if p.Voter {
				voters++
			}
		}
		if lab.LeaderOf(peers) == "" || voters < min(len(b.names), 3) {
			return fmt.Sprintf("Raft: %+v", peers)
		}
		for _, v := range b.vs {
			if v.ready == nil {
				continue
			}
			if why := v.ready(ctx, b); why != "" {
				return v.name + ": " + why
			}
		}
		h := b.holders()
		cur := map[string]string{}
		for _, v := range b.vs {
			if len(h[v.name]) != 1 {
				prev = nil
				return fmt.Sprintf("%s answers on %v", v.name, h[v.name])
			}
			cur[v.name] = h[v.name][0]
		}
		if prev == nil || !equal(prev, cur) {
			prev = cur
			time.Sleep(time.Second)
			return fmt.Sprintf("holders %v, once", cur)
		}
		got = cur
		return ""
	})
	return got, err
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// witness polls the ports of vs on nodes every pollEvery until stop.
type witness struct {
	mu    sync.Mutex
	polls map[string][]recovery.Poll // by variant
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func (b *bench) watch(vs []variant, nodes []string) *witness {
	ctx, cancel := context.WithCancel(context.Background())
	w := &witness{polls: map[string][]recovery.Poll{}, stop: cancel}
	for _, v := range vs {
		for _, n := range nodes {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				c := client()
				tick := time.NewTicker(b.p.pollEvery)
				defer tick.Stop()
				for {
					p := poll(c, n, b.url(n, v))
					w.mu.Lock()
					w.polls[v.name] = append(w.polls[v.name], p)
					w.mu.Unlock()
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			}()
		}
	}
	return w
}

func (w *witness) snapshot(variant string) []recovery.Poll {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]recovery.Poll(nil), w.polls[variant]...)
}

func (w *witness) close() {
	w.stop()
	w.wg.Wait()
}

// wait waits until each variant of vs answered from a node other than not
// at or after since, or timeout, and returns when each did (Lost when it
// did not).
func (w *witness) wait(vs []variant, since time.Time, not string, timeout time.Duration) map[string]recovery.Kill {
	deadline := since.Add(timeout)
	got := map[string]recovery.Kill{}
	for {
		for _, v := range vs {
			if _, ok := got[v.name]; ok {
				continue
			}
			if p, ok := recovery.FirstAnswer(w.snapshot(v.name), since, not); ok {
				got[v.name] = recovery.Kill{Variant: v.name, D: p.At.Sub(since)}
			}
		}
		if len(got) == len(vs) {
			return got
		}
		if time.Now().After(deadline) {
			for _, v := range vs {
				if _, ok := got[v.name]; !ok {
					got[v.name] = recovery.Kill{Variant: v.name, D: timeout, Lost: true}
				}
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crashes SIGKILLs the process of each variant with a crash unit where
// it runs, crashes times each, 3 s apart (systemd refuses a sixth start
// within 10 s by default), and measures each to its answering again
// there.
func (b *bench) crashes(ctx context.Context) ([]recovery.Kill, error) {
	var out []recovery.Kill
	for _, v := range b.vs {
		if v.crash == "" {
			continue
		}
		ks, err := b.crash(ctx, v)
		out = append(out, ks...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (b *bench) crash(ctx context.Context, v variant) ([]recovery.Kill, error) {
	var out []recovery.Kill
	for i := 0; i < b.p.crashes; i++ {
		holders, err := b.settle(ctx)
		if err != nil {
			return out, err
		}
		node := holders[v.name]
		w := b.watch([]variant{v}, []string{node})
		res, err := b.l.Exec(ctx, node, "sh", "-ec", `pid=$(systemctl show -p MainPID --value `+v.crash+`)
[ "$pid" -gt 0 ]
kill -KILL "$pid"
date +%s%N`)
		if err != nil {
			w.close()
			return out, fmt.Errorf("crash %s on %s: %w: %s", v.name, node, err, res)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(res), 10, 64)
		if err != nil {
			w.close()
			return out, fmt.Errorf("crash %s on %s: %q: %w", v.name, node, res, err)
		}
		// Stamped after the kill: a poll started before it could be
		// answered by the process about to die.
		t0 := time.Unix(0, ns)
		k := w.wait([]variant{v}, t0, "", b.p.timeout)[v.name]
		w.close()
		out = append(out, k)
		logf("crash %d of %s on %s: answering again after %s (lost: %v)", i+1, v.name, node, k.D.Round(time.Millisecond), k.Lost)
		time.Sleep(3 * time.Second)
	}
	return out, nil
}

// killLog is one kill as the report lists it.
type killLog struct {
	victim string
	leader bool
	dc     string // Pacemaker's designated controller before the kill
	kills  []recovery.Kill
}

// kills kills nodes until every variant's quota is met (or three times
// as many kills as the quotas add up to were made).
func (b *bench) kills(ctx context.Context) ([]recovery.Kill, []killLog, error) {
	var all []recovery.Kill
	var log []killLog
	names := make([]string, len(b.vs))
	for i, v := range b.vs {
		names[i] = v.name
	}
	limit := 3 * len(b.vs) * (b.p.quota.NotLeader + b.p.quota.Leader)
	var last time.Time
	for i := 0; i < limit; i++ {
		cell, more := recovery.Next(names, b.p.quota, all)
		if !more {
			break
		}
		holders, err := b.settle(ctx)
		if err != nil {
			return all, log, err
		}
		victim := holders[cell.Variant]
		if err := b.moveLeader(ctx, victim, cell.Leader); err != nil {
			return all, log, err
		}
		// Moving the leadership can move nothing else, but check.
		if holders, err = b.settle(ctx); err != nil {
			return all, log, err
		}
		if holders[cell.Variant] != victim {
			logf("%s moved from %s to %s while the leadership moved: choosing again", cell.Variant, victim, holders[cell.Variant])
			continue
		}
		peers, err := b.l.RaftPeers(ctx)
		if err != nil {
			return all, log, err
		}
		leader := lab.LeaderOf(peers) == victim
		dc := ""
		if out, err := b.l.Exec(ctx, victim, "crm_mon", "-1"); err == nil {
			dc = crmDC(out)
		}
		var hit []variant
		var survivors []string
		for _, v := range b.vs {
			if holders[v.name] == victim {
				hit = append(hit, v)
			}
		}
		for _, n := range b.l.Running() {
			if n != victim {
				survivors = append(survivors, n)
			}
		}
		// Consul's lock delay ends by a timer started at each release;
		// the timer of an earlier release of the same key deletes a
		// later delay when it fires (state.Delay.SetExpiration), so a
		// kill within the 15 s delay of the one before would cut the
		// consul lock variant's delay short. Space the kills.
		if wait := time.Until(last.Add(b.p.gap)); wait > 0 {
			time.Sleep(wait)
		}
		w := b.watch(hit, survivors)
		time.Sleep(100 * time.Millisecond) // every poller started
		t0 := time.Now()
		last = t0
		if err := b.l.Kill(ctx, victim); err != nil {
			w.close()
			return all, log, err
		}
		got := w.wait(hit, t0, victim, b.p.timeout)
		w.close()
		entry := killLog{victim: victim, leader: leader, dc: dc}
		var parts []string
		for _, v := range hit {
			k := got[v.name]
			k.Leader = leader
			all = append(all, k)
			entry.kills = append(entry.kills, k)
			parts = append(parts, fmt.Sprintf("%s %s%s", v.name, k.D.Round(time.Millisecond), map[bool]string{true: " (LOST)"}[k.Lost]))
		}
		log = append(log, entry)
		logf("kill %d: %s (Raft leader: %v): %s", len(log), victim, leader, strings.Join(parts, ", "))
		if err := b.l.Start(ctx, victim); err != nil {
			return all, log, err
		}
		if err := b.rejoin(ctx, victim); err != nil {
			return all, log, err
		}
	}
	return all, log, nil
}

// rejoin waits until Pacemaker sees every node again after node's
// restart. When it does not within 90 s, it prints what corosync and
// Pacemaker say on node and restarts them there once (the report counts
// it).
func (b *bench) rejoin(ctx context.Context, node string) error {
	if err := b.l.WaitAllUp(ctx, 3*time.Minute); err != nil {
		return err
	}
	if lab.Poll(ctx, 90*time.Second, "Pacemaker sees "+node+" again", func() string { return pacemakerReady(ctx, b) }) == nil {
		return nil
	}
	for _, n := range b.l.Running() {
		out, _ := b.l.Exec(ctx, n, "sh", "-c", "systemctl is-active corosync pacemaker; corosync-cfgtool -s; crm_mon -1; journalctl --no-pager -o short-precise -n 40 -u corosync -u pacemaker")
		logf("Pacemaker does not see %s 90 s after its restart; on %s:\n%s", node, n, out)
	}
	b.rejoins = append(b.rejoins, node)
	if out, err := b.l.Exec(ctx, node, "systemctl", "restart", "corosync", "pacemaker"); err != nil {
		return fmt.Errorf("restart corosync and pacemaker on %s: %v: %s", node, err, out)
	}
	return lab.Poll(ctx, 90*time.Second, "Pacemaker sees "+node+" again after restarting corosync and pacemaker there", func() string { return pacemakerReady(ctx, b) })
}
