// Command migrate measures process migration (vprocd, `ssi migrate`) in a
// 3-node lab whose nodes have CRIU: the freeze time of a small cooperative
// program (client/vproc/coop) and of a small unmodified one moved through
// CRIU, each over many moves between node 2 and node 3 while the
// `ssi exec` that started it on node 1 reads its output; the same-node
// floor of CRIU (a plain `criu dump` + `criu restore` of the same shell
// loop inside node 1, as a service), interleaved with the moves; and the
// load leveler, from six CPU-bound registered programs on node 1 to two
// per node: how long, and how many moves.
//
// Every wall time is taken inside a node by migprobe, which this command
// builds and copies into the nodes; the output pauses are read by this
// command from the `ssi exec` it runs in node 1.
//
//	go run ./bench/migrate -dist dist -out bench/migrate/RESULTS.md
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/bench/hostinfo"
	"github.com/openssi/openssi/bench/stats"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

// Where the bench installs its programs in every node.
const (
	coopBin  = "/usr/local/bin/bench-coopcounter"
	probeBin = "/usr/local/bin/migprobe"
	spinBin  = "/usr/local/bin/bench-spin" // a copy of dash, registered for load leveling
	nodeCRIU = "/usr/local/sbin/criu"      // where the lab installs CRIU (lab.Options.CRIU)
)

// The small unmodified programs: shell loops printing a counter with a
// short sleep (migprobe's floor runs the same). loopArgs forks sleep(1)
// every line; nforkArgs sleeps in bash itself (read -t on a pipe of its
// own that nothing writes, its two ends apart: a pipe held read-write on
// one descriptor comes back from a CRIU restore returning at once, and
// the loop then prints as fast as it can), one process with no child.
var (
	loopArgs  = []string{"/bin/sh", "-c", `i=0; while :; do i=$((i+1)); echo $i; sleep 0.002; done`}
	nforkArgs = []string{"/bin/bash", "-c", `exec 3<> <(:); exec 4</dev/fd/3 5>/dev/fd/3 3<&-; i=0; while :; do i=$((i+1)); echo $i; read -t 0.002 -u 4; done`}
)

// The variants of the move runs, by name.
const (
	vCoop       = "cooperative"
	vCRIU       = "criu"
	vCRIUNofork = "criu-nofork"
	vFloor      = "floor"
	vFloorNF    = "floor-nofork"
)

// spinScript is the leveler's CPU-bound program.
const spinScript = `while :; do :; done`

type params struct {
	dist    string
	criu    string
	moves   int
	reps    int
	settle  time.Duration
	settleN int
	lift    bool
	out     string
}

func main() {
	var p params
	flag.StringVar(&p.dist, "dist", "dist", "dist/ with repo/ from `make repo`")
	flag.StringVar(&p.criu, "criu", os.Getenv("CRIU_BIN"), "the CRIU binary the lab's nodes get (make criu; default $CRIU_BIN)")
	flag.IntVar(&p.moves, "moves", 50, "measured moves of each program, and same-node dump+restore rounds")
	flag.IntVar(&p.reps, "level-reps", 3, "repetitions of the leveler run (0: skip it)")
	flag.DurationVar(&p.settle, "settle", 10*time.Second, "how long the leveler run watches the spread programs stay put")
	flag.IntVar(&p.settleN, "lines", 30, "lines of output read before and after each move")
	flag.BoolVar(&p.lift, "lift-sandbox", true, "when a CRIU move fails under the unit as packaged, lift vprocd's seccomp sandbox with a drop-in and measure so (said in the results)")
	flag.StringVar(&p.out, "out", "", "write the results as Markdown here")
	flag.Parse()
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench/migrate:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// bench is the lab under measurement.
type bench struct {
	l   *lab.Lab
	p   params
	num map[string]int // node name -> node number
}

func run(p params) error {
	if p.criu == "" {
		return errors.New("no CRIU binary: give -criu or CRIU_BIN (make criu builds it)")
	}
	if p.moves < 1 {
		return fmt.Errorf("-moves %d: want at least 1", p.moves)
	}
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ := filepath.Abs(p.dist)
	dir, err := os.MkdirTemp("", "openssi-bench-migrate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins := map[string]string{}
	for _, b := range []struct{ name, pkg string }{
		{"migprobe", "./bench/migrate/migprobe"},
		{"coopcounter", "./daemons/vprocd/server/testdata/coopcounter"},
	} {
		out := filepath.Join(dir, b.name)
		build := exec.Command("go", "build", "-trimpath", "-o", out, b.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v: %s", b.name, err, o)
		}
		bins[b.name] = out
	}
	l, err := lab.Open(lab.Options{Dir: filepath.Join(dir, "lab"), Prefix: "bmg", Subnet: "10.77.27", Dist: dist, Consul: consul, CRIU: p.criu, Log: os.Stderr})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := l.Down(ctx); err != nil { // a crashed run's lab of this name
		return err
	}
	defer l.Down(ctx)
	start := time.Now()
	loadBefore := hostinfo.LoadAvg()
	if err := l.Up(ctx, 3); err != nil {
		return err
	}
	b := &bench{l: l, p: p}
	v, err := l.View(ctx, "node1")
	if err != nil {
		return err
	}
	b.num = map[string]int{}
	for _, n := range v.Nodes {
		b.num[n.Name] = n.Number
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		if b.num[n] == 0 {
			return fmt.Errorf("%s has no node number: %s", n, v.Summary())
		}
		if err := b.install(n, bins["migprobe"], probeBin); err != nil {
			return err
		}
		if err := b.install(n, bins["coopcounter"], coopBin); err != nil {
			return err
		}
		if out, err := l.Exec(ctx, n, "cp", "/bin/dash", spinBin); err != nil {
			return fmt.Errorf("%s: %v: %s", n, err, out)
		}
	}
	for _, n := range []string{"node2", "node3"} {
		if err := retry(ctx, "ssi exec on "+n, func() (string, error) {
			return l.Exec(ctx, "node1", "ssi", "exec", "-n", strconv.Itoa(b.num[n]), "--", "true")
		}); err != nil {
			return err
		}
	}
	status, _ := l.Exec(ctx, "node1", "sh", "-c", "ssi status 2>&1 | grep -i criu || true")
	shipped, err := b.shippedCRIU(ctx)
	if err != nil {
		diagnose(ctx, l)
		return err
	}
	if !shipped.ok && p.lift {
		if err := b.liftSandbox(ctx); err != nil {
			return err
		}
		shipped.lifted = true
		shipped.filters, _ = l.Exec(ctx, "node1", "sh", "-c", "grep -h Seccomp_filters /proc/$(pidof vprocd)/status || true")
		shipped.filters = strings.TrimSpace(shipped.filters)
		logf("vprocd's seccomp sandbox lifted on every node (%s)", shipped.filters)
	}

	logf("moves: %d of each program between node2 and node3 (after one from node1), %d same-node dump+restore rounds in node1, interleaved", p.moves, p.moves)
	mv, err := b.moves(ctx)
	if err != nil {
		diagnose(ctx, l)
		return err
	}
	var lv []levelRun
	if p.reps > 0 {
		logf("the leveler: %d runs from 6/0/0", p.reps)
		if lv, err = b.leveler(ctx); err != nil {
			diagnose(ctx, l)
			return err
		}
	}
	kernel, _ := l.Exec(ctx, "node1", "uname", "-r")
	machine := fmt.Sprintf("kernel %s; the host's load average (1, 5, 15 min) %s at the start and %s at the end", strings.TrimSpace(kernel), loadBefore, hostinfo.LoadAvg())
	report := render(p, mv, lv, shipped, strings.TrimSpace(status), machine, time.Since(start))
	fmt.Print(report)
	if p.out != "" {
		return os.WriteFile(p.out, []byte(report), 0o644)
	}
	return nil
}

// install copies a host file into a node.
func (b *bench) install(node, src, dst string) error {
	n, err := b.l.State().Node(node)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Root(), dst), data, 0o755)
}

func retry(ctx context.Context, what string, f func() (string, error)) error {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not working after a minute: %v: %s", what, err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// diagnose prints node1's view of the membership, its vprocd's last
// lines and the leveler's status, before the lab is torn down.
func diagnose(ctx context.Context, l *lab.Lab) {
	for _, n := range []string{"node1", "node2", "node3"} {
		for _, args := range [][]string{
			{"ssi", "ps", "-o", "migrate"},
			{"journalctl", "--no-pager", "-o", "short-precise", "-n", "30", "-u", "openssi-vprocd"},
		} {
			out, _ := l.Exec(ctx, n, args...)
			fmt.Fprintf(os.Stderr, "--- %s: %s\n%s\n", n, strings.Join(args, " "), out)
		}
	}
}

// shippedResult is what a CRIU move does under the unit as packaged.
type shippedResult struct {
	ok      bool
	out     string // ssi migrate's answer when it failed
	lifted  bool   // the bench lifted vprocd's seccomp sandbox
	filters string // vprocd's Seccomp_filters line after
}

// shippedCRIU moves the bash loop once, node1 -> node2, with the nodes as
// they booted, and ends it.
func (b *bench) shippedCRIU(ctx context.Context) (shippedResult, error) {
	var r shippedResult
	s, err := b.startStream(ctx, "shipped", nforkArgs...)
	if err != nil {
		return r, err
	}
	defer func() {
		if s.cpid != 0 {
			_, _ = b.l.Exec(ctx, "node1", "ssi", "kill", "-s", "KILL", strconv.FormatInt(s.cpid, 10))
		}
		_ = s.cmd.Process.Kill()
		<-s.done
	}()
	cps, err := b.locate(ctx, 1, s.args)
	if err != nil {
		return r, err
	}
	s.cpid = cps[0]
	_, err = b.move(ctx, s, "node2")
	var mf moveFailed
	switch {
	case err == nil:
		r.ok = true
	case errors.As(err, &mf):
		r.out = err.Error()
	default:
		return r, err
	}
	logf("a CRIU move with the unit as packaged: ok %v %s", r.ok, r.out)
	return r, nil
}

// liftDropIn lifts vprocd's seccomp sandbox (bench only; see render).
const liftDropIn = `[Service]
SystemCallArchitectures=
RestrictAddressFamilies=
SystemCallFilter=
`

// liftSandbox installs liftDropIn on every node, restarts vprocd and
// waits until node1 runs programs on the others again.
func (b *bench) liftSandbox(ctx context.Context) error {
	for _, n := range []string{"node1", "node2", "node3"} {
		st, err := b.l.State().Node(n)
		if err != nil {
			return err
		}
		dir := filepath.Join(st.Root(), "etc/systemd/system/openssi-vprocd.service.d")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "bench-migrate.conf"), []byte(liftDropIn), 0o644); err != nil {
			return err
		}
		if out, err := b.l.Exec(ctx, n, "sh", "-c", "systemctl daemon-reload && systemctl restart openssi-vprocd"); err != nil {
			return fmt.Errorf("%s: restart vprocd: %v: %s", n, err, out)
		}
	}
	for _, n := range []string{"node2", "node3"} {
		if err := retry(ctx, "ssi exec on "+n, func() (string, error) {
			return b.l.Exec(ctx, "node1", "ssi", "exec", "-n", strconv.Itoa(b.num[n]), "--", "true")
		}); err != nil {
			return err
		}
	}
	return nil
}

// stream is a migratable program started with ssi exec in node 1, its
// output read here as it comes, each line with the time it was read.
type stream struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	nums []int
	at   []time.Time
	bad  []string
	done chan struct{}
	cpid int64
	args []string
	// refused counts the moves vprocd refused (ssi migrate exit 4),
	// reasons the first distinct answers.
	refused int
	reasons []string
}

// maxRefused bounds the refused moves of a stream over the run.
const maxRefused = 200

func (b *bench) startStream(ctx context.Context, name string, args ...string) (*stream, error) {
	argv := append([]string{"ssi", "exec", "--migratable", "-n", strconv.Itoa(b.num["node1"]), "--"}, args...)
	cmd, err := b.l.Command(ctx, "node1", argv...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &stream{name: name, cmd: cmd, done: make(chan struct{}), args: args}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			now := time.Now()
			s.mu.Lock()
			if n, err := strconv.Atoi(sc.Text()); err == nil {
				s.nums, s.at = append(s.nums, n), append(s.at, now)
			} else if len(s.bad) < 10 {
				s.bad = append(s.bad, sc.Text())
			}
			s.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	return s, nil
}

func (s *stream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nums)
}

// waitFor waits until at least n lines were read.
func (s *stream) waitFor(n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for s.count() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the output stalled: %d lines read, want %d", s.name, s.count(), n)
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s: ssi exec ended after %d lines", s.name, s.count())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// anomalies counts the lines that break 1, 2, 3, ... (a gap or a
// repeat) and those that are not numbers.
func (s *stream) anomalies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := len(s.bad)
	for i, n := range s.nums {
		if i > 0 && n != s.nums[i-1]+1 || i == 0 && n != 1 {
			k++
		}
	}
	return k
}

type psRow struct {
	CPID int64    `json:"cpid"`
	Node int      `json:"node"`
	Args []string `json:"args"`
}

// ps is node1's `ssi ps -o json`.
func (b *bench) ps(ctx context.Context) ([]psRow, error) {
	out, err := b.l.Exec(ctx, "node1", "ssi", "ps", "-o", "json")
	if err != nil {
		return nil, err
	}
	var rows []psRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("ssi ps -o json: %w: %s", err, out)
	}
	return rows, nil
}

// locate waits until ssi ps shows k processes running args and returns
// their cpids.
func (b *bench) locate(ctx context.Context, k int, args []string) ([]int64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := b.ps(ctx)
		if err != nil {
			return nil, err
		}
		var cps []int64
		for _, r := range rows {
			if slices.Equal(r.Args, args) {
				cps = append(cps, r.CPID)
			}
		}
		if len(cps) == k {
			return cps, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("ssi ps shows %d processes running %q, want %d", len(cps), strings.Join(args, " "), k)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// timed is migprobe time's answer.
type timed struct {
	NS   int64  `json:"ns"`
	Code int    `json:"code"`
	Out  string `json:"out"`
}

// floorRound is migprobe floor's answer.
type floorRound struct {
	Dump       int64  `json:"dump_ns"`
	Restore    int64  `json:"restore_ns"`
	Gap        int64  `json:"gap_ns"`
	Interval   int64  `json:"interval_ns"`
	After      int64  `json:"after_ns"`
	Continuous bool   `json:"continuous"`
	Err        string `json:"err"`
}

// sample is one move: ssi migrate's wall time, the longest pause of the
// output across it, the median pause between lines before it, and the
// freeze (the pause less that interval).
type sample struct {
	wall, gap, interval, freeze time.Duration
	after                       time.Duration // the median pause of the lines after
}

// moveResults are the samples of the move runs, by variant.
type moveResults struct {
	moves     map[string][]sample
	floors    map[string][]floorRound
	warm      map[string]sample // the first move, node1 -> node2, not counted
	failed    map[string][]string
	anomalies map[string]int
	lines     map[string]int
	refused   map[string]int
	reasons   map[string][]string
	broken    map[string]int // floor rounds whose counter broke
	// unmovable are the programs whose first move failed 5 times: not
	// moved further.
	unmovable map[string]bool
}

// move moves s to node and measures it: it waits for p.settleN lines,
// runs ssi migrate through migprobe in node1, then waits for p.settleN
// more lines and finds the longest pause of the output since the move
// began.
func (b *bench) move(ctx context.Context, s *stream, node string) (sample, error) {
	if err := s.waitFor(s.count() + b.p.settleN); err != nil {
		return sample{}, err
	}
	var (
		mark  int
		began time.Time
		t     timed
	)
	for {
		s.mu.Lock()
		mark = len(s.nums)
		s.mu.Unlock()
		began = time.Now()
		out, err := b.l.Exec(ctx, "node1", probeBin, "time", "--", "ssi", "migrate", strconv.FormatInt(s.cpid, 10), strconv.Itoa(b.num[node]))
		if err != nil {
			return sample{}, fmt.Errorf("migprobe time: %v: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &t); err != nil {
			return sample{}, fmt.Errorf("migprobe time: %w: %s", err, out)
		}
		// Exit 4: vprocd found it could not move now (a child of the
		// shell loop starting up with a file open): it runs on
		// untouched; count it and ask again.
		if t.Code != 4 || s.refused >= maxRefused {
			break
		}
		s.refused++
		if len(s.reasons) < 5 && !slices.Contains(s.reasons, t.Out) {
			s.reasons = append(s.reasons, t.Out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if t.Code != 0 {
		return sample{}, moveFailed{fmt.Sprintf("ssi migrate %d to %s: exit %d: %s", s.cpid, node, t.Code, t.Out)}
	}
	if err := s.waitFor(s.count() + b.p.settleN); err != nil {
		return sample{}, fmt.Errorf("after the move to %s: %w", node, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.at
	interval := gapMedian(at[max(mark-b.p.settleN, 0):mark])
	// The longest pause of the lines read from the one before the move
	// began to the settleN-th after it ended.
	first := mark - 1
	for first > 0 && at[first].After(began) {
		first--
	}
	gap := gapMax(at[max(first, 0):])
	after := gapMedian(at[len(at)-b.p.settleN:])
	return sample{wall: time.Duration(t.NS), gap: gap, interval: interval, freeze: max(gap-interval, 0), after: after}, nil
}

// moveFailed is a move ssi migrate reported failed: the program runs on
// where it was, and the run goes on.
type moveFailed struct{ msg string }

func (e moveFailed) Error() string { return e.msg }

// floorRound runs one same-node dump+restore round of argv in node1, as
// a service of its systemd (confined as vprocd's children are).
func (b *bench) floorRound(ctx context.Context, argv []string) (floorRound, error) {
	args := append([]string{"systemd-run", "--wait", "--pipe", "--quiet", "--collect", probeBin, "floor", "-criu", nodeCRIU, "--"}, argv...)
	out, err := b.l.Exec(ctx, "node1", args...)
	var f floorRound
	if jerr := json.Unmarshal([]byte(lastLine(out)), &f); jerr != nil {
		return f, fmt.Errorf("migprobe floor: %v %v: %s", err, jerr, out)
	}
	if f.Err != "" {
		return f, errors.New("migprobe floor: " + f.Err)
	}
	return f, nil
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// moves runs the moves of the three programs and the floor rounds of
// the two loops, interleaved in a new random order each round.
func (b *bench) moves(ctx context.Context) (*moveResults, error) {
	r := &moveResults{moves: map[string][]sample{}, floors: map[string][]floorRound{}, warm: map[string]sample{}, failed: map[string][]string{},
		anomalies: map[string]int{}, lines: map[string]int{}, refused: map[string]int{}, reasons: map[string][]string{}, broken: map[string]int{},
		unmovable: map[string]bool{}}
	progs := map[string][]string{vCoop: {coopBin}, vCRIU: loopArgs, vCRIUNofork: nforkArgs}
	floors := map[string][]string{vFloor: loopArgs, vFloorNF: nforkArgs}
	streams := map[string]*stream{}
	defer func() {
		for _, s := range streams {
			if s.cpid != 0 {
				_, _ = b.l.Exec(ctx, "node1", "ssi", "kill", "-s", "KILL", strconv.FormatInt(s.cpid, 10))
			}
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}()
	at := map[string]string{}
	for _, name := range []string{vCoop, vCRIU, vCRIUNofork} {
		s, err := b.startStream(ctx, name, progs[name]...)
		if err != nil {
			return nil, err
		}
		streams[name] = s
		cps, err := b.locate(ctx, 1, s.args)
		if err != nil {
			return nil, err
		}
		s.cpid = cps[0]
		if out, err := b.l.Exec(ctx, "node1", "sh", "-c", "ssi ps -o migrate | grep -F -- "+strconv.FormatInt(s.cpid, 10)); err == nil {
			logf("%s: %s", s.name, strings.Join(strings.Fields(out), " "))
		}
		// The first move, node1 -> node2, is not counted; a failed one
		// is tried again.
		for try := 1; ; try++ {
			w, err := b.move(ctx, s, "node2")
			if err == nil {
				r.warm[name] = w
				break
			}
			var mf moveFailed
			if !errors.As(err, &mf) {
				return nil, fmt.Errorf("%s: the first move: %w", s.name, err)
			}
			r.failed[name] = append(r.failed[name], "the first move: "+err.Error())
			logf("%s: the first move: %v", name, err)
			if try == 5 {
				break
			}
		}
		if _, ok := r.warm[name]; !ok {
			r.unmovable[name] = true // its failures say why; the others go on
			continue
		}
		at[name] = "node2"
	}
	other := map[string]string{"node2": "node3", "node3": "node2"}
	maxFailed := max(b.p.moves/2, 5)
	for i := range b.p.moves {
		order := []string{vCoop, vCRIU, vCRIUNofork, vFloor, vFloorNF}
		rand.Shuffle(len(order), func(a, c int) { order[a], order[c] = order[c], order[a] })
		for _, what := range order {
			if r.unmovable[what] {
				continue
			}
			if argv, ok := floors[what]; ok {
				f, err := b.floorRound(ctx, argv)
				if err != nil {
					r.failed[what] = append(r.failed[what], err.Error())
					logf("%s round %d: %v", what, i+1, err)
				} else {
					if !f.Continuous {
						r.broken[what]++
					}
					r.floors[what] = append(r.floors[what], f)
				}
			} else {
				s := streams[what]
				to := other[at[what]]
				m, err := b.move(ctx, s, to)
				var mf moveFailed
				switch {
				case errors.As(err, &mf):
					r.failed[what] = append(r.failed[what], err.Error())
					logf("%s move %d to %s: %v", what, i+1, to, err)
				case err != nil:
					return nil, err // the stream broke: nothing more to measure
				default:
					at[what] = to
					r.moves[what] = append(r.moves[what], m)
				}
			}
			if len(r.failed[what]) > maxFailed {
				return nil, fmt.Errorf("%s: %d runs failed: %s", what, len(r.failed[what]), strings.Join(r.failed[what], "; "))
			}
		}
		if (i+1)%10 == 0 {
			logf("%d/%d rounds: freeze p50 cooperative %s, criu %s, criu-nofork %s; floor dump+restore %s, nofork %s", i+1, b.p.moves,
				ms(pct(freezes(r.moves[vCoop]), 50)), ms(pct(freezes(r.moves[vCRIU]), 50)), ms(pct(freezes(r.moves[vCRIUNofork]), 50)),
				ms(pct(floorTotals(r.floors[vFloor]), 50)), ms(pct(floorTotals(r.floors[vFloorNF]), 50)))
		}
	}
	for name, s := range streams {
		r.anomalies[name] = s.anomalies()
		r.lines[name] = s.count()
		r.refused[name], r.reasons[name] = s.refused, s.reasons
	}
	return r, nil
}

// levelRun is one run of the leveler from 6/0/0.
type levelRun struct {
	took      time.Duration // from six running on node 1 to two per node
	moves     int           // node changes seen by ssi ps until then
	after     int           // node changes seen in the settle time after
	spread    bool          // two per node reached
	final     string        // the spread at the end, node1/node2/node3
	decisions string        // the leveler's own moved/failed decisions since the start, all nodes
}

// leveler runs p.reps leveler runs.
func (b *bench) leveler(ctx context.Context) ([]levelRun, error) {
	if out, err := b.l.Exec(ctx, "node1", "ssi", "loadlevel", "add", filepath.Base(spinBin)); err != nil {
		return nil, fmt.Errorf("ssi loadlevel add: %v: %s", err, out)
	}
	var runs []levelRun
	for i := range b.p.reps {
		r, err := b.levelOnce(ctx)
		if err != nil {
			return runs, fmt.Errorf("leveler run %d: %w", i+1, err)
		}
		logf("leveler run %d: 2/2/2 %v after %s, %d moves (+%d in the %s after), spread %s", i+1, r.spread, r.took.Round(time.Millisecond), r.moves, r.after, b.p.settle, r.final)
		runs = append(runs, r)
	}
	return runs, nil
}

func (b *bench) levelOnce(ctx context.Context) (levelRun, error) {
	var r levelRun
	args := []string{spinBin, "-c", spinScript}
	var execs []*exec.Cmd
	var cps []int64
	defer func() {
		for _, cp := range cps {
			_, _ = b.l.Exec(ctx, "node1", "ssi", "kill", "-s", "KILL", strconv.FormatInt(cp, 10))
		}
		for _, c := range execs {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for range 6 {
		c, err := b.l.Command(ctx, "node1", append([]string{"ssi", "exec", "--migratable", "-n", strconv.Itoa(b.num["node1"]), "--"}, args...)...)
		if err != nil {
			return r, err
		}
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			return r, err
		}
		execs = append(execs, c)
	}
	// The clock starts once the six run: they start on node1 (-n), and
	// a move before ssi ps first shows them is counted from there.
	began := time.Now()
	cps, err := b.locate(ctx, 6, args)
	if err != nil {
		return r, err
	}
	where := map[int64]int{}
	for _, cp := range cps {
		where[cp] = b.num["node1"]
	}
	spreadOf := func() (string, bool) {
		per := map[int]int{}
		for _, n := range where {
			per[n]++
		}
		k := []int{per[b.num["node1"]], per[b.num["node2"]], per[b.num["node3"]]}
		return fmt.Sprintf("%d/%d/%d", k[0], k[1], k[2]), k[0] == 2 && k[1] == 2 && k[2] == 2
	}
	deadline := began.Add(90 * time.Second)
	var settleEnd time.Time
	for {
		time.Sleep(250 * time.Millisecond)
		rows, err := b.ps(ctx)
		if err != nil {
			return r, err
		}
		now := time.Now()
		for _, row := range rows {
			if old, ok := where[row.CPID]; ok && old != row.Node {
				where[row.CPID] = row.Node
				if r.spread {
					r.after++
				} else {
					r.moves++
				}
			}
		}
		s, even := spreadOf()
		r.final = s
		if !r.spread && even {
			r.spread, r.took = true, now.Sub(began)
			settleEnd = now.Add(b.p.settle)
		}
		if r.spread && now.After(settleEnd) || !r.spread && now.After(deadline) {
			break
		}
	}
	if !r.spread {
		r.took = time.Since(began)
	}
	r.decisions = b.decisions(ctx, began)
	return r, nil
}

// decisions sums the leveler's moved and failed decisions taken since
// from on every node (ssi loadlevel status; node clocks are the host's).
func (b *bench) decisions(ctx context.Context, from time.Time) string {
	var moved, failed int
	for _, n := range []string{"node1", "node2", "node3"} {
		out, err := b.l.Exec(ctx, n, "ssi", "loadlevel", "status", "-o", "json")
		if err != nil {
			return "unknown"
		}
		var st struct {
			Decisions []struct {
				Last  time.Time `json:"last"`
				Count int       `json:"count"`
				Kind  string    `json:"kind"`
			} `json:"decisions"`
		}
		if json.Unmarshal([]byte(out), &st) != nil {
			return "unknown"
		}
		for _, d := range st.Decisions {
			if d.Last.Before(from) {
				continue
			}
			switch d.Kind {
			case "moved":
				moved += d.Count
			case "failed":
				failed += d.Count
			}
		}
	}
	return fmt.Sprintf("%d moved, %d failed", moved, failed)
}

func gapMedian(at []time.Time) time.Duration {
	if len(at) < 2 {
		return 0
	}
	gaps := make([]time.Duration, 0, len(at)-1)
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

func gapMax(at []time.Time) time.Duration {
	var m time.Duration
	for i := 1; i < len(at); i++ {
		m = max(m, at[i].Sub(at[i-1]))
	}
	return m
}

func freezes(s []sample) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.freeze
	}
	return out
}

func field(s []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

func floorTotals(fs []floorRound) []time.Duration {
	out := make([]time.Duration, len(fs))
	for i, f := range fs {
		out[i] = time.Duration(f.Dump + f.Restore)
	}
	return out
}

func floorField(fs []floorRound, f func(floorRound) int64) []time.Duration {
	out := make([]time.Duration, len(fs))
	for i, x := range fs {
		out[i] = time.Duration(f(x))
	}
	return out
}

func pct(ds []time.Duration, p float64) time.Duration { return stats.Percentile(ds, p) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// ms50Str is a p50, or "no moves" when there was none.
func ms50Str(d time.Duration, ok bool) string {
	if !ok {
		return "no moves"
	}
	return ms(d)
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func render(p params, r *moveResults, lv []levelRun, sh shippedResult, criuStatus, machine string, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# vprocd: process migration and the load leveler\n\n")
	fmt.Fprintf(&b, "Measured %s in the lab (`lab up -n 3` with CRIU: systemd-nspawn Debian bookworm nodes on one bridge, each with Consul, openssi from the local repository and the pinned CRIU 4.2.1 of `make criu`) "+
		"on the project's build machine: %d cores (%s), %s, Go %s; the lab lock held, so no other lab ran (other helpers' builds and tests may have). One run of `go run ./bench/migrate` (%s).",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), hostinfo.CPUModel(), machine, runtime.Version(), took.Round(time.Second))
	if criuStatus != "" {
		fmt.Fprintf(&b, " node1's `ssi status` of CRIU: `%s`.", strings.Join(strings.Fields(criuStatus), " "))
	}
	b.WriteString("\n\n")

	b.WriteString("## CRIU under the shipped vprocd unit\n\n")
	if sh.ok {
		b.WriteString("A CRIU move of the bash loop (node1 -> node2) with the unit as packaged: **works**; every figure below is the shipped configuration's.\n\n")
	} else {
		fmt.Fprintf(&b, "A CRIU move of the bash loop (node1 -> node2) with the unit as packaged: **fails**: `%s`.\n\n", sh.out)
		if sh.lifted {
			fmt.Fprintf(&b, "vprocd runs criu as its child, inside its unit's seccomp sandbox (SystemCallArchitectures=native, RestrictAddressFamilies=...), and the kernel refuses PTRACE_O_SUSPEND_SECCOMP to a tracer that is itself filtered, "+
				"so criu cannot dump the program (itself filtered, as vprocd's child); the same criu dump run as a service without those filters works, and a restore works under them (checked by hand in the lab). "+
				"**So every CRIU figure below, and the leveler's, is measured with the sandbox lifted** by a drop-in on every node (`%s`, then vprocd restarted; vprocd's %s): what vprocd's CRIU path costs once criu dump runs outside the filters, not what the package does today.\n\n",
				strings.ReplaceAll(strings.TrimSpace(liftDropIn), "\n", " "), sh.filters)
		}
	}
	fmt.Fprintf(&b, "## Freeze time: %d moves of each program between node2 and node3, read by `ssi exec` on node1\n\n", p.moves)
	b.WriteString("The freeze is the longest pause of the program's output as node1's `ssi exec` delivers it across the move, less the program's median pause between lines before it (its print interval); " +
		"`ssi migrate` is the wall time of the whole `ssi migrate CPID NODE` process run in node1. Each program moved once node1 -> node2 first (not counted), then alternately node2 <-> node3. " +
		"The same-node floor is a plain `criu dump` + `criu restore` of the same shell loop in node1, interleaved with the moves, its pause measured the same way in the node.\n\n")
	b.WriteString("| program | moves | freeze p50 | freeze p99 | longest pause p50 | print interval p50, before / after | `ssi migrate` wall p50 | p99 | failed moves |\n|---|---|---|---|---|---|---|---|---|\n")
	labels := map[string]string{
		vCoop:       "cooperative: coopcounter (Go, client/vproc/coop), a line every 3 ms",
		vCRIU:       "CRIU: `sh -c` loop (dash), `sleep 0.002` (a child) between lines",
		vCRIUNofork: "CRIU: `bash -c` loop, `read -t 0.002` (no child) between lines",
	}
	for _, v := range []string{vCoop, vCRIU, vCRIUNofork} {
		s := r.moves[v]
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %d |\n", labels[v], len(s),
			ms(pct(freezes(s), 50)), ms(pct(freezes(s), 99)),
			ms(pct(field(s, func(x sample) time.Duration { return x.gap }), 50)),
			ms(pct(field(s, func(x sample) time.Duration { return x.interval }), 50))+" / "+ms(pct(field(s, func(x sample) time.Duration { return x.after }), 50)),
			ms(pct(field(s, func(x sample) time.Duration { return x.wall }), 50)),
			ms(pct(field(s, func(x sample) time.Duration { return x.wall }), 99)), len(r.failed[v]))
	}
	floorFreeze := func(fl []floorRound) []time.Duration {
		out := make([]time.Duration, len(fl))
		for i, f := range fl {
			out[i] = max(time.Duration(f.Gap-f.Interval), 0)
		}
		return out
	}
	fmt.Fprintf(&b, "\nSame-node floor in node1, p50 / p99 (rounds: dash loop %d, failed %d; bash loop %d, failed %d):\n\n",
		len(r.floors[vFloor]), len(r.failed[vFloor]), len(r.floors[vFloorNF]), len(r.failed[vFloorNF]))
	b.WriteString("| part | `sh -c` loop with `sleep` | `bash -c` loop with `read -t` |\n|---|---|---|\n")
	for _, x := range []struct {
		label string
		ds    func([]floorRound) []time.Duration
	}{
		{"`criu dump` (plain: the loop killed once dumped)", func(fl []floorRound) []time.Duration {
			return floorField(fl, func(f floorRound) int64 { return f.Dump })
		}},
		{"`criu restore` (under vprocd's holder, fresh PID namespace) until restored", func(fl []floorRound) []time.Duration {
			return floorField(fl, func(f floorRound) int64 { return f.Restore })
		}},
		{"dump + restore", floorTotals},
		{"freeze (the loop's longest output pause less its interval)", floorFreeze},
		{"print interval before / after (p50 of each)", nil},
	} {
		if x.ds == nil {
			iv := func(fl []floorRound) string {
				return ms(pct(floorField(fl, func(f floorRound) int64 { return f.Interval }), 50)) + " / " + ms(pct(floorField(fl, func(f floorRound) int64 { return f.After }), 50))
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", x.label, iv(r.floors[vFloor]), iv(r.floors[vFloorNF]))
			continue
		}
		a, c := x.ds(r.floors[vFloor]), x.ds(r.floors[vFloorNF])
		fmt.Fprintf(&b, "| %s | %s / %s | %s / %s |\n", x.label, ms(pct(a, 50)), ms(pct(a, 99)), ms(pct(c, 50)), ms(pct(c, 99)))
	}
	for _, v := range []string{vCoop, vCRIU, vCRIUNofork} {
		if r.unmovable[v] {
			fmt.Fprintf(&b, "\n**%s could not move at all**: its first move, node1 -> node2, failed 5 times in a row (below); it was not moved further.\n", v)
		}
	}
	b.WriteString("\nThe first move of each, node1 -> node2 (not counted):")
	for _, v := range []string{vCoop, vCRIU, vCRIUNofork} {
		fmt.Fprintf(&b, " %s freeze %s (`ssi migrate` %s);", v, ms(r.warm[v].freeze), ms(r.warm[v].wall))
	}
	b.WriteString("\n\nOutput read over the run, and lines breaking the count 1, 2, 3, ... (a gap, a repeat, or not a number):")
	for _, v := range []string{vCoop, vCRIU, vCRIUNofork} {
		fmt.Fprintf(&b, " %s %d lines, **%d** breaks;", v, r.lines[v], r.anomalies[v])
	}
	fmt.Fprintf(&b, " floor rounds whose counter broke: %d and %d.\n", r.broken[vFloor], r.broken[vFloorNF])
	fmt.Fprintf(&b, "Moves vprocd refused at once (`ssi migrate` exit 4, the program untouched), each asked again 20 ms later and not counted: %s %d, %s %d, %s %d.\n",
		vCoop, r.refused[vCoop], vCRIU, r.refused[vCRIU], vCRIUNofork, r.refused[vCRIUNofork])
	for _, k := range []string{vCoop, vCRIU, vCRIUNofork} {
		for _, e := range r.reasons[k] {
			fmt.Fprintf(&b, "- refused %s move: %s\n", k, e)
		}
	}
	for _, k := range []string{vCoop, vCRIU, vCRIUNofork, vFloor, vFloorNF} {
		for i, e := range r.failed[k] {
			if i == 5 {
				fmt.Fprintf(&b, "- ... %d more failed %s runs\n", len(r.failed[k])-5, k)
				break
			}
			fmt.Fprintf(&b, "- failed %s run: %s\n", k, e)
		}
	}

	coopP50 := pct(freezes(r.moves[vCoop]), 50)
	b.WriteString("\nTargets of the issue:\n\n")
	fmt.Fprintf(&b, "- cooperative freeze p50 <= 50 ms: %s (%s)\n", verdict(len(r.moves[vCoop]) > 0 && coopP50 <= 50*time.Millisecond), ms(coopP50))
	for _, c := range []struct{ v, floor, label string }{{vCRIU, vFloor, "`sh -c` loop with `sleep`"}, {vCRIUNofork, vFloorNF, "`bash -c` loop with `read -t`"}} {
		ms50 := pct(freezes(r.moves[c.v]), 50)
		ok := len(r.moves[c.v]) > 0
		fmt.Fprintf(&b, "- CRIU migration freeze p50 <= 250 ms for a small process, %s: %s (%s)\n", c.label, verdict(ok && ms50 <= 250*time.Millisecond), ms50Str(ms50, ok))
		floorP50, floorFreezeP50 := pct(floorTotals(r.floors[c.floor]), 50), pct(floorFreeze(r.floors[c.floor]), 50)
		if floorFreezeP50 > 0 && floorP50 > 0 {
			wall := pct(field(r.moves[c.v], func(x sample) time.Duration { return x.wall }), 50)
			fmt.Fprintf(&b, "- CRIU migration within 1.5x of the same-node dump+restore floor, %s: %s (like for like, the output pauses: migration freeze p50 / floor freeze p50 = **%.2fx**; the wall times: `ssi migrate` p50 %s / floor dump + restore p50 %s = **%.2fx**)\n",
				c.label, verdict(ok && float64(ms50) <= 1.5*float64(floorFreezeP50)), float64(ms50)/float64(floorFreezeP50), ms(wall), ms(floorP50), float64(wall)/float64(floorP50))
		}
	}
	b.WriteString("- for scale, published CRIU figures: about 105 ms frozen for a large container, 1-2 s for 14-process containers\n\n")

	if len(lv) > 0 {
		b.WriteString("## The load leveler: six CPU-bound registered programs started on node1, to two per node\n\n")
		fmt.Fprintf(&b, "Each run: six `ssi exec --migratable -n 1 -- %s -c '%s'` (a copy of dash, registered with `ssi loadlevel add %s`), timed from the six `ssi exec` started on node1 (`ssi ps` then shows them there) to `ssi ps` showing two per node, polled every 250 ms; then watched %s more for moves after the spread. Moves are node changes seen by `ssi ps` (a move the leveler tried and that failed changes nothing: it is in the leveler's own decisions, `ssi loadlevel status`, on the right). The leveler's defaults: period 2 s, cool-down 20 s, stability factor 1.3.\n\n",
			spinBin, spinScript, filepath.Base(spinBin), p.settle)
		b.WriteString("| run | 2/2/2 reached | time | moves | moves after, while watched | spread at the end | the leveler's decisions |\n|---|---|---|---|---|---|---|\n")
		var times []time.Duration
		allFour := true
		for i, x := range lv {
			fmt.Fprintf(&b, "| %d | %v | %s | %d | %d | %s | %s |\n", i+1, x.spread, x.took.Round(10*time.Millisecond), x.moves, x.after, x.final, x.decisions)
			if x.spread {
				times = append(times, x.took)
			}
			allFour = allFour && x.spread && x.moves == 4 && x.after == 0
		}
		fmt.Fprintf(&b, "\nTarget: 6/0/0 to 2/2/2 in the minimum of 4 moves, then no more: %s", verdict(allFour))
		if len(times) > 0 {
			fmt.Fprintf(&b, " (time to 2/2/2: median %s over %d runs)", pct(times, 50).Round(10*time.Millisecond), len(times))
		}
		b.WriteString(".\n")
	}
	b.WriteString(method)
	return b.String()
}

const method = `
## Method

- The lab: 3 nodes made for CRIU (` + "`lab.Options.CRIU`" + `: the pinned CRIU at /usr/local/sbin/criu, no nspawn system-call filter, the capabilities a restore uses), vprocd with its defaults (CRIU found on PATH). The bench copies the cooperative test program (` + "`daemons/vprocd/server/testdata/coopcounter`" + `, static), migprobe and a copy of dash into every node.
- The three moving programs are started once, by ` + "`ssi exec --migratable -n 1`" + ` run in node1 by this command, which reads their stdout and stamps each line with the host's monotonic clock as it reads it (the nodes share the host's kernel, so no clock skew). ` + "`ssi ps -o migrate`" + ` chose "coop" for the coopcounter and "criu" for the shell loops. Before each move the bench waits for 30 new lines, and after it for 30 more; the freeze is the longest pause between two lines from the last line read before ` + "`ssi migrate`" + ` began to those 30, less the median pause of the 30 lines before it. So it is what a reader of the stream sees: the program stopped at the source, its image or state carried over, the program running at the target, and its output re-plumbed back to node1's ` + "`ssi exec`" + `. A pause can be 1-2 print intervals longer than the program was stopped (a line due just as it froze), and any scheduling pause of this 2-core machine falls in it.
- ` + "`ssi migrate`" + `'s wall time is taken inside node1 by migprobe (a fork and exec of ` + "`ssi migrate CPID NODE`" + `, waited for): ssi's start-up, the call to vprocd, and the whole move until the target confirmed.
- The floor is one migprobe run per round as a transient service of node1's systemd (` + "`systemd-run --wait --pipe`" + `, root, the service confinement vprocd's children have; vprocd's own unit settings are not copied): it starts the same shell loop (setsid) with its output on a pipe it reads, waits for 30 lines, runs ` + "`criu dump --tree PID --shell-job --manage-cgroups=ignore`" + ` (plain: criu kills the loop once dumped; vprocd dumps with --leave-stopped and kills it itself after the target confirms), then restores it the way vprocd does: its own binary as vprocd's CRIU holder (package criuhold) first in a fresh PID and mount namespace, running ` + "`criu restore --restore-detached --shell-job --manage-cgroups=ignore --inherit-fd fd[4]:pipe:[N]`" + ` with the same pipe (vprocd plugs in new pipes, and restores with --leave-stopped then resumes it), timed until the holder reports the pid. The images go to a local directory, where a move tars them and streams them over the peer link to the target. The floor's rounds run in the same loop as the moves, the three in a new random order each round.
- Leveler: see its section; node loads are those vprocd exchanges (run-queue per CPU); every node of the lab shares the host's 2 cores, so six spinning programs load the whole machine whatever node they run on, and the other measurements are not running then.
- Percentiles are nearest-rank (bench/stats).
`
