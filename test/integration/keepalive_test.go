package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/daemons/keepalived/decl"
	"github.com/openssi/openssi/daemons/keepalived/server"
	"github.com/openssi/openssi/daemons/keepalived/unitfake"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/nodetest"
)

// keepNode is one node's openssi-keepalived, run in this process against
// the node's real dlmd and Consul, with unitfake for systemd (the
// applications are child processes of the test; the lab e2e drives real
// transient units).
type keepNode struct {
	num    uint32
	n      *nodetest.Node
	dir    string
	units  *unitfake.Units
	m      *server.Manager
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

const keepStopFor = 2 * time.Second

func startKeepalived(t *testing.T, n *nodetest.Node, num uint32, all []uint32, tl *unitfake.Timeline, files map[string]string) *keepNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keepalive.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetLevel(logrus.InfoLevel)
	log.SetOutput(testWriter{t})
	units := unitfake.New(num, tl)
	m := server.New(server.Config{
		Self: num, Dir: dir, StopTimeout: keepStopFor, Rescan: 200 * time.Millisecond, Poll: 20 * time.Millisecond, Retry: 200 * time.Millisecond,
		Units: units, KV: consul.NewKV(n.Agent.Client()),
		Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(n.DlmdSocket())) },
		Log:     log.WithField("node", num),
	})
	for _, o := range all {
		m.Membership(o, true)
	}
	ln, _, err := localapi.Listen(filepath.Join(n.RunDir, "keepalived.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	server.NewAPI(m).Register(g)
	go func() { _ = g.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	k := &keepNode{num: num, n: n, dir: dir, units: units, m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { k.done <- m.Run(ctx, nil) }()
	t.Cleanup(func() {
		k.stop(t)
		g.Stop()
		units.Close()
	})
	return k
}

// stop ends the daemon as a SIGTERM does.
func (k *keepNode) stop(t *testing.T) {
	k.once.Do(func() {
		k.cancel()
		select {
		case err := <-k.done:
			if err != nil {
				t.Errorf("node %d: keepalived: %v", k.num, err)
			}
		case <-time.After(keepStopFor + 10*time.Second):
			t.Errorf("node %d: keepalived did not stop", k.num)
		}
	})
}

// runningOn waits until exactly one node runs unit (other than not, if
// given) and returns it with the unit's pid there.
func runningOn(t *testing.T, ctx context.Context, nodes []*keepNode, unit string, not *keepNode) (*keepNode, int) {
	t.Helper()
	for {
		var on []*keepNode
		pid := 0
		for _, k := range nodes {
			if p := k.units.PID(unit); p != 0 {
				on = append(on, k)
				pid = p
			}
		}
		if len(on) == 1 && on[0] != not {
			return on[0], pid
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not running on exactly one node (%d)", unit, len(on))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ssi runs ssi on node k and returns its exit code, stdout and stderr.
func (k *keepNode) ssi(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Main(append([]string{"--run-dir", k.n.RunDir}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestKeepalive: three nodes with real Consul, clmsd and dlmd, each with
// openssi-keepalived in this process. An application that exits is
// restarted in place; one that fails its check is restarted in place;
// after its retries it moves to the next node by its placement rule; one
// registered with ssi keepalive add runs, moves and is removed; a
// malformed file, a user that does not exist and a check that can never
// pass each give one clear line and no crash loop. No application ever
// runs on two nodes at once.
func TestKeepalive(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 150*time.Second)
	var nums []uint32
	for _, n := range c.Nodes {
		nums = append(nums, uint32(numberOf(t, ctx, n)))
	}
	slices.Sort(nums)
	byNum := map[uint32]*nodetest.Node{}
	for _, n := range c.Nodes {
		byNum[uint32(numberOf(t, ctx, n))] = n
	}
	flag := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	primary, backup := nums[0], nums[1]
	files := map[string]string{
		// Restarted in place when killed; the third kill within a
		// minute moves it to its backup.
		"crasher.yaml": fmt.Sprintf("command: [/bin/sleep, \"1000\"]\nprimary: %d\nbackup: [%d]\nretries: 3\nwithin: 1m\n", primary, backup),
		// Its check passes while the flag file exists.
		"checked.yaml": fmt.Sprintf("command: [/bin/sleep, \"1000\"]\nprimary: %d\nretries: 100\ncheck: \"exec:test -e %s\"\ncheck_interval: 200ms\n", primary, flag),
		// A user that does not exist anywhere.
		"nouser.yaml": "command: [/bin/sleep, \"1000\"]\nuser: nosuchuser\n",
		// A check that can never pass: given up on every node, then
		// left stopped.
		"hopeless.yaml": "command: [/bin/sleep, \"1000\"]\nretries: 2\ncheck: \"exec:false\"\ncheck_interval: 200ms\n",
		// Malformed: line 2, field retries.
		"broken.yaml": "command: [/bin/sleep, \"1000\"]\nretries: many\n",
	}
	tl := &unitfake.Timeline{}
	var nodes []*keepNode
	byK := map[uint32]*keepNode{}
	for _, num := range nums {
		k := startKeepalived(t, byNum[num], num, nums, tl, files)
		nodes = append(nodes, k)
		byK[num] = k
	}
	defer func() {
		for _, u := range []string{"crasher", "checked", "reg", "hopeless"} {
			if o := tl.Overlaps(decl.Unit(u)); len(o) > 0 {
				t.Errorf("%s ran on two nodes at once:\n%v\nevents:\n%v", u, o, tl.Events())
			}
		}
	}()

	// The exiting application: restarted in place, fast.
	crasher := decl.Unit("crasher")
	on, pid := runningOn(t, ctx, nodes, crasher, nil)
	if on.num != primary {
		t.Fatalf("crasher started on node %d, want its primary %d", on.num, primary)
	}
	var inPlace []time.Duration
	for i := 0; i < 2; i++ {
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for {
			k, p := runningOn(t, ctx, nodes, crasher, nil)
			if p != pid {
				if k != on {
					t.Fatalf("kill %d: restarted on node %d, want in place on %d", i+1, k.num, on.num)
				}
				inPlace = append(inPlace, time.Since(killed))
				pid = p
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("crasher: SIGKILL to restarted in place: %v", inPlace)
	for _, d := range inPlace {
		if d > time.Second {
			t.Errorf("an in-place restart took %v, want under 1s", d)
		}
	}
	// The third failure within the window: to the backup.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if k, _ := runningOn(t, ctx, nodes, crasher, on); k.num != backup {
		t.Fatalf("after its retries crasher went to node %d, want its backup %d", k.num, backup)
	}
	var code int
	var out, errOut string
	for {
		code, out, errOut = byK[nums[2]].ssi("keepalive", "status", "crasher")
		if code == 0 && strings.Contains(out, fmt.Sprintf("running on node %d", backup)) && strings.Contains(out, fmt.Sprintf("given up on node(s): %d", primary)) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ssi keepalive status crasher: exit %d:\n%s%s", code, out, errOut)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("ssi keepalive status crasher:\n%s", out)
	// A move forgets that its primary gave it up: it runs there again.
	if code, out, errOut = byK[nums[2]].ssi("keepalive", "move", "crasher", fmt.Sprint(primary)); code != 0 {
		t.Fatalf("ssi keepalive move crasher: exit %d:\n%s%s", code, out, errOut)
	}
	if k, _ := runningOn(t, ctx, nodes, crasher, byK[backup]); k.num != primary {
		t.Fatalf("crasher moved to node %d, want %d", k.num, primary)
	}

	// The application that fails its check: restarted in place.
	checked := decl.Unit("checked")
	con, cpid := runningOn(t, ctx, nodes, checked, nil)
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	for {
		if p := con.units.PID(checked); p != 0 && p != cpid {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("checked was not restarted after failing its check")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if k, _ := runningOn(t, ctx, nodes, checked, nil); k != con {
		t.Errorf("checked moved to node %d; want it restarted in place on %d", k.num, con.num)
	}

	// Registered with ssi keepalive add; moved; removed.
	asker := byK[nums[2]]
	code, out, errOut = asker.ssi("keepalive", "add", "reg", "--primary", fmt.Sprint(nums[2]), "--backup", fmt.Sprint(nums[1]), "--", "sleep", "1000")
	if code != 0 {
		t.Fatalf("ssi keepalive add: exit %d:\n%s%s", code, out, errOut)
	}
	reg := decl.Unit("reg")
	if k, _ := runningOn(t, ctx, nodes, reg, nil); k.num != nums[2] {
		t.Fatalf("reg started on node %d, want its primary %d", k.num, nums[2])
	}
	waitRun := func(name string, node uint32) {
		t.Helper()
		for {
			st, _ := asker.m.List(name)
			if len(st) == 1 && st[0].Run.Node == node && st[0].Run.State == "running" {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not recorded running on node %d: %+v", name, node, st)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitRun("reg", nums[2])
	if code, out, errOut = asker.ssi("keepalive", "add", "reg", "--", "sleep", "1"); code != 1 || !strings.Contains(errOut, "already registered") {
		t.Errorf("ssi keepalive add of a registered name: exit %d:\n%s%s", code, out, errOut)
	}
	if code, out, errOut = asker.ssi("keepalive", "add", "bad", "--primary", "99", "--", "sleep", "1"); code != 1 || !strings.Contains(errOut, "node 99 is not a member") {
		t.Errorf("ssi keepalive add --primary 99: exit %d:\n%s%s", code, out, errOut)
	}
	if code, out, errOut = asker.ssi("keepalive", "add", "bad", "--check", "tcp:0", "--", "sleep", "1"); code != 1 || !strings.Contains(errOut, "--check: check \"tcp:0\": the port must be 1..65535") {
		t.Errorf("ssi keepalive add --check tcp:0: exit %d:\n%s%s", code, out, errOut)
	}
	moveStart := time.Now()
	if code, out, errOut = asker.ssi("keepalive", "move", "reg", fmt.Sprint(nums[1])); code != 0 || !strings.Contains(out, fmt.Sprintf("from node %d to node %d", nums[2], nums[1])) {
		t.Fatalf("ssi keepalive move: exit %d:\n%s%s", code, out, errOut)
	}
	if k, _ := runningOn(t, ctx, nodes, reg, byK[nums[2]]); k.num != nums[1] {
		t.Fatalf("reg moved to node %d, want %d", k.num, nums[1])
	}
	t.Logf("reg: moved in %v (a clean hand-over: no stop-timeout wait)", time.Since(moveStart))
	if code, out, errOut = asker.ssi("keepalive", "move", "reg", "99"); code != 1 || !strings.Contains(errOut, "node 99 is not UP") {
		t.Errorf("ssi keepalive move reg 99: exit %d:\n%s%s", code, out, errOut)
	}

	// One clear line each: the malformed file, the missing user, the
	// hopeless check; the list shows every application.
	code, out, errOut = asker.ssi("keepalive", "list")
	if code != 0 || !strings.Contains(errOut, "broken.yaml:2: retries: \"many\": want an integer 1..100") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("ssi keepalive list: the malformed file: exit %d:\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"crasher", "checked", "reg", "nouser", "hopeless"} {
		if !strings.Contains(out, name) {
			t.Errorf("ssi keepalive list lacks %s:\n%s", name, out)
		}
	}
	t.Logf("ssi keepalive list:\n%s%s", out, errOut)
	code, out, errOut = asker.ssi("keepalive", "status", "nouser")
	if code != 0 || !strings.Contains(out, "not running") || !strings.Contains(out, "user nosuchuser does not exist on this node") {
		t.Errorf("ssi keepalive status nouser: exit %d:\n%s%s", code, out, errOut)
	}
	hopeless := decl.Unit("hopeless")
	for {
		st, _ := asker.m.List("hopeless")
		if len(st) == 1 && st[0].Run.State == "failed" && len(st[0].Run.GaveUp) == len(nums) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("hopeless was not given up on every node: %+v", st)
		case <-time.After(50 * time.Millisecond):
		}
	}
	before := 0
	for _, num := range nums {
		before += tl.Starts(num, hopeless)
	}
	time.Sleep(2 * time.Second)
	after := 0
	for _, num := range nums {
		after += tl.Starts(num, hopeless)
	}
	if after != before || after > 2*len(nums) {
		t.Errorf("hopeless: %d starts, then %d more after it was given up everywhere: a crash loop", before, after-before)
	}
	code, out, errOut = asker.ssi("keepalive", "status", "hopeless")
	if code != 0 || !strings.Contains(out, "failed") || !strings.Contains(out, "failed its check") {
		t.Errorf("ssi keepalive status hopeless: exit %d:\n%s%s", code, out, errOut)
	}
	t.Logf("ssi keepalive status hopeless:\n%s", out)

	// Removed: stopped wherever it ran.
	if code, out, errOut = asker.ssi("keepalive", "remove", "reg"); code != 0 {
		t.Fatalf("ssi keepalive remove: exit %d:\n%s%s", code, out, errOut)
	}
	for {
		n := 0
		for _, k := range nodes {
			if k.units.PID(reg) != 0 {
				n++
			}
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("reg still runs after ssi keepalive remove")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code, _, errOut = asker.ssi("keepalive", "remove", "crasher"); code != 1 || !strings.Contains(errOut, "crasher.yaml: remove that file") {
		t.Errorf("ssi keepalive remove of a file's application: exit %d: %s", code, errOut)
	}
}

// TestKeepaliveNodeLoss: the node running an application loses its
// Consul agent and daemons (a power loss) while its keepalived runs on,
// as a cut-off node's would: its dlmd session ends, it stops the
// application, and the backup starts it only after the old copy is gone.
func TestKeepaliveNodeLoss(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 120*time.Second)
	var nums []uint32
	byNum := map[uint32]*nodetest.Node{}
	for _, n := range c.Nodes {
		num := uint32(numberOf(t, ctx, n))
		nums = append(nums, num)
		byNum[num] = n
	}
	slices.Sort(nums)
	files := map[string]string{"web.yaml": fmt.Sprintf("command: [/bin/sleep, \"1000\"]\nprimary: %d\nbackup: [%d, %d]\n", nums[0], nums[1], nums[2])}
	tl := &unitfake.Timeline{}
	var nodes []*keepNode
	for _, num := range nums {
		nodes = append(nodes, startKeepalived(t, byNum[num], num, nums, tl, files))
	}
	web := decl.Unit("web")
	old, _ := runningOn(t, ctx, nodes, web, nil)
	killAt := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = old.n.Kill() }()
	for _, k := range nodes {
		if k != old {
			k.m.Membership(old.num, false)
		}
	}
	next, _ := runningOn(t, ctx, nodes, web, old)
	wg.Wait()
	if next.num != nums[1] {
		t.Errorf("web went to node %d, want the first backup %d", next.num, nums[1])
	}
	t.Logf("power loss of node %d: web answering again on node %d %v later", old.num, next.num, time.Since(killAt))
	if o := tl.Overlaps(web); len(o) > 0 {
		t.Errorf("web ran on two nodes at once:\n%v\n%v", o, tl.Events())
	}
}

// TestKeepalivedWithoutSystemd runs the openssi-keepalived binary on
// nodes whose init is not systemd (this host): it serves ssi keepalive,
// registers and lists, and runs nothing.
func TestKeepalivedWithoutSystemd(t *testing.T) {
	dir := t.TempDir()
	c := nodetest.Start(t, nodetest.Options{
		Consul:    consulagent.Options{Servers: 2},
		Clmsd:     clmsdBin,
		Dlmd:      dlmdBin,
		Binaries:  map[string]string{"keepalived": keepalivedBin},
		ExtraYAML: "keepalived:\n  dir: " + dir + "\n",
	})
	n := c.Nodes[0]
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli.Main(append([]string{"--run-dir", n.RunDir}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := run("keepalive", "list"); code != 0 || !strings.Contains(out, "no monitored application") {
		t.Errorf("ssi keepalive list: exit %d:\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("keepalive", "add", "web", "--retries", "0", "--", "/bin/true"); code != 2 || !strings.Contains(errOut, "--retries 0: want 1..100") {
		t.Errorf("ssi keepalive add --retries 0: exit %d:\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("keepalive", "add", "web", "--within", "10ms", "--", "/bin/true"); code != 1 || !strings.Contains(errOut, "--within: 10ms: want 1s..24h") {
		t.Errorf("ssi keepalive add --within 10ms: exit %d:\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("keepalive", "add", "web", "--", "/bin/true"); code != 0 {
		t.Fatalf("ssi keepalive add: exit %d:\n%s%s", code, out, errOut)
	}
	ctx := ctxFor(t, 30*time.Second)
	for {
		code, out, _ := run("keepalive", "list")
		if code == 0 && strings.Contains(out, "web") && strings.Contains(out, "not running") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("web not listed:\n%s", out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
