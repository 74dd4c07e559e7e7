package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/nodetest"
	"github.com/openssi/openssi/internal/roottest"
)

func startDlm(t *testing.T, servers, clients int) *nodetest.Cluster {
	t.Helper()
	return nodetest.Start(t, nodetest.Options{
		Consul: consulagent.Options{Servers: servers, Clients: clients},
		Clmsd:  clmsdBin,
		Dlmd:   dlmdBin,
	})
}

func dlmClient(t *testing.T, ctx context.Context, n *nodetest.Node) *dlm.Client {
	t.Helper()
	c, err := dlm.New(ctx, dlm.WithSocket(n.DlmdSocket()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDlmMutualExclusionThroughNodeLoss: clients on every node of a
// 3-node cluster hammer a few resources with EX locks, keeping a counter in
// each value block; the master of the hottest resource, as dlmd reports it
// (its Locks API), is killed (a power loss) mid-run. The survivors must go
// on, no two holders may ever overlap, the counters must never lose a
// committed increment while valid, and nothing may hang.
func TestDlmMutualExclusionThroughNodeLoss(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 90*time.Second)
	nums := make([]uint32, len(c.Nodes))
	for i, n := range c.Nodes {
		nums[i] = uint32(numberOf(t, ctx, n))
	}
	const ls = "hammer"
	resources := []string{"hot", "r1", "r2", "r3"}
	t.Logf("nodes %v", nums)

	type resState struct {
		holder    atomic.Int64
		committed atomic.Int64 // the log: the count written by the last holder
	}
	st := map[string]*resState{}
	for _, r := range resources {
		st[r] = &resState{}
	}
	var killed atomic.Bool
	victimIdx := atomic.Int64{} // the index in c.Nodes of the victim, set before killed
	victimIdx.Store(-1)
	var violations atomic.Int64
	var afterKill [4]atomic.Int64 // grants per node index after the kill
	var wg sync.WaitGroup
	stop := make(chan struct{})
	const perNode = 3
	clients := make([][]*dlm.Client, len(c.Nodes))
	for ni, n := range c.Nodes {
		for range perNode {
			clients[ni] = append(clients[ni], dlmClient(t, ctx, n))
		}
	}
	// NL locks keep the resources, and so their value blocks, alive
	// between holders (the VMS idiom). The first node to lock a resource
	// may become its master (first-requester mastering): resource j is
	// first locked from node j%3, so the masters are spread and a node's
	// loss also drops its locks at masters that survive.
	for j, r := range resources {
		for k := range c.Nodes {
			for _, cl := range clients[(j+k)%len(c.Nodes)] {
				if _, err := cl.Lock(ctx, ls, r, dlm.NL); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for ni := range c.Nodes {
		isVictim := func() bool { return victimIdx.Load() == int64(ni) }
		for w, cl := range clients[ni] {
			id := int64(ni*100 + w + 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r := resources[0]
					if i%3 == 2 {
						r = resources[1+(int(id)+i)%3]
					}
					s := st[r]
					lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					l, err := cl.Lock(lctx, ls, r, dlm.EX, dlm.ValueBlock())
					cancel()
					if err != nil {
						if killed.Load() && isVictim() {
							return
						}
						if errors.Is(err, dlm.ErrCancelled) {
							// Its master went silent (killed): dlmd
							// fails the request rather than let it
							// hang; ask again, as an application would.
							continue
						}
						t.Errorf("worker %d: lock %s: %v", id, r, err)
						return
					}
					if !s.holder.CompareAndSwap(0, id) {
						h := s.holder.Load()
						dead := killed.Load() && h/100 == victimIdx.Load()
						if killed.Load() && isVictim() {
							return // a dead node's process does nothing
						}
						if !dead {
							violations.Add(1)
							t.Errorf("mutual exclusion violated on %s: worker %d entered while %d holds", r, id, h)
						}
						s.holder.Store(id)
					}
					if killed.Load() && isVictim() {
						return // a dead node's process does nothing
					}
					v, valid, _ := l.Value()
					cnt := int64(v[0]) | int64(v[1])<<8 | int64(v[2])<<16
					if valid {
						if want := s.committed.Load(); cnt != want {
							violations.Add(1)
							t.Errorf("%s: value block says %d, the log %d", r, cnt, want)
						}
					} else {
						cnt = s.committed.Load() // rebuilt from the log
					}
					if killed.Load() && !isVictim() {
						afterKill[ni].Add(1)
					}
					cnt++
					v[0], v[1], v[2] = byte(cnt), byte(cnt>>8), byte(cnt>>16)
					s.committed.Store(cnt) // the log, written while holding the lock
					s.holder.CompareAndSwap(id, 0)
					uctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					err = l.Unlock(uctx, dlm.WriteValue(v))
					cancel()
					if err != nil {
						if isVictim() {
							return // lost with its node: the value block is then not valid
						}
						t.Errorf("worker %d: unlock %s: %v", id, r, err)
						return
					}
				}
			}()
		}
	}
	// abort stops the workers before failing the test.
	abort := func(format string, args ...any) {
		t.Helper()
		close(stop)
		wg.Wait()
		t.Fatalf(format, args...)
	}
	time.Sleep(1500 * time.Millisecond)
	// Mid-run, ask a node's dlmd which node masters each resource.
	masters, err := c.Nodes[0].DlmMasters(ctx, ls)
	if err != nil {
		abort("%v", err)
	}
	victimNum, listed := masters["hot"]
	vi := slices.Index(nums, victimNum)
	if !listed || vi < 0 {
		abort("dlmd does not report %q mastered on one of the nodes %v: masters %v", "hot", nums, masters)
	}
	victim := c.Nodes[vi]
	t.Logf("masters %v: killing node %d, the master of %q", masters, victimNum, "hot")
	before := st["hot"].committed.Load()
	victimIdx.Store(int64(vi))
	killed.Store(true)
	if err := victim.Kill(); err != nil {
		abort("%v", err)
	}
	t.Logf("killed node %d after %d grants of %q", victimNum, before, "hot")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for ni, n := range c.Nodes {
			if n != victim && afterKill[ni].Load() < 20 {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) || t.Failed() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("workers hang")
	}
	for ni, n := range c.Nodes {
		if n != victim && afterKill[ni].Load() < 20 {
			t.Errorf("node index %d made %d grants after the kill", ni, afterKill[ni].Load())
		}
	}
	t.Logf("hot: %d grants committed; violations %d", st["hot"].committed.Load(), violations.Load())
}

// TestDlmRemoteAndDeadlock: a lock mastered on another node blocks and is
// granted across nodes with its blocking AST, and a deadlock between two
// nodes fails exactly one of the two requests.
func TestDlmRemoteAndDeadlock(t *testing.T) {
	c := startDlm(t, 2, 0)
	ctx := ctxFor(t, 60*time.Second)
	a := dlmClient(t, ctx, c.Nodes[0])
	b := dlmClient(t, ctx, c.Nodes[1])
	la, err := a.Lock(ctx, "dl", "x", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Lock(ctx, "dl", "y", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() {
		_, err := a.Lock(ctx, "dl", "y", dlm.EX)
		errs <- err
	}()
	select {
	case bl := <-b.Blocking():
		if bl.Lock.Resource() != "y" || bl.Mode != dlm.EX {
			t.Fatalf("bast %v %v", bl.Lock.Resource(), bl.Mode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no blocking AST across nodes")
	}
	go func() {
		_, err := b.Lock(ctx, "dl", "x", dlm.EX)
		errs <- err
	}()
	e1 := <-errs
	if !errors.Is(e1, dlm.ErrDeadlock) {
		t.Fatalf("first result %v, want a deadlock victim", e1)
	}
	// The victim's owner releases its lock; the other request completes.
	if strings.Contains(e1.Error(), "dl/y") {
		_ = la.Unlock(ctx)
	} else {
		_ = lb.Unlock(ctx)
	}
	if e2 := <-errs; e2 != nil {
		t.Fatalf("second request: %v", e2)
	}
}

const dlmChildEnv = "OPENSSI_TEST_DLM_CHILD"

// dlmChild is the helper process of TestDlmAccessAndCrash.
func dlmChild() int {
	mode, socket, _ := strings.Cut(os.Getenv(dlmChildEnv), ":")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dlm.New(ctx, dlm.WithSocket(socket))
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	switch mode {
	case "access":
		_, err := c.Lock(ctx, "openssi.system", "r", dlm.PR)
		fmt.Printf("uid=%d system:%v\n", os.Getuid(), errors.Is(err, dlm.ErrPermission))
		_, err = c.Lock(ctx, "rootspace", "r", dlm.PR)
		fmt.Printf("root-owned:%v\n", errors.Is(err, dlm.ErrPermission))
		l, err := c.Lock(ctx, "nobodyspace", "r", dlm.EX)
		fmt.Printf("own:%v\n", err == nil && l.Mode() == dlm.EX)
	case "hold":
		if _, err := c.Lock(ctx, "crash", "held", dlm.EX); err != nil {
			fmt.Println("lock:", err)
			return 1
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
	}
	return 0
}

// TestDlmAccessAndCrash: an unprivileged user cannot touch a root-only
// lockspace, and the locks of a client killed with SIGKILL are released.
func TestDlmAccessAndCrash(t *testing.T) {
	roottest.Need(t) // it runs a child as uid 65534
	c := startDlm(t, 1, 0)
	ctx := ctxFor(t, 60*time.Second)
	n := c.Nodes[0]
	root := dlmClient(t, ctx, n)
	if l, err := root.Lock(ctx, "rootspace", "r", dlm.NL); err != nil {
		t.Fatal(err)
	} else {
		_ = l.Unlock(ctx)
	}

	const nobody = 65534
	dir, err := os.MkdirTemp("", "dlm-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	bin := filepath.Join(dir, "child.test")
	in, _ := os.Open(self)
	out, _ := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	_, _ = io.Copy(out, in)
	in.Close()
	out.Close()
	// Let nobody reach the socket (as a member of its group would).
	for d := filepath.Dir(n.DlmdSocket()); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	if err := os.Chown(n.DlmdSocket(), 0, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), dlmChildEnv+"=access:"+n.DlmdSocket())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, b)
	}
	if want := fmt.Sprintf("uid=%d system:true\nroot-owned:true\nown:true\n", nobody); string(b) != want {
		t.Fatalf("child said %q, want %q", b, want)
	}

	// A client that holds a lock and is killed.
	cmd = exec.Command(bin)
	cmd.Env = append(os.Environ(), dlmChildEnv+"=hold:"+n.DlmdSocket())
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	k, _ := io.ReadAtLeast(stdout, buf, len("locked"))
	if !strings.Contains(string(buf[:k]), "locked") {
		t.Fatalf("child: %q", buf[:k])
	}
	if _, err := root.Lock(ctx, "crash", "held", dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
		t.Fatalf("while the child holds it: %v", err)
	}
	start := time.Now()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := root.Lock(lctx, "crash", "held", dlm.EX); err != nil {
		t.Fatalf("after SIGKILL of the holder: %v", err)
	}
	t.Logf("granted %v after the holder was killed", time.Since(start))
}

// TestDlmSsiLock: `ssi lock` runs a command under the lock and exits with
// its status; `ssi locks` shows the holders across the cluster, and
// `ssi locks --purge` releases orphans.
func TestDlmSsiLock(t *testing.T) {
	c := startDlm(t, 2, 0)
	ctx := ctxFor(t, 30*time.Second)
	a := dlmClient(t, ctx, c.Nodes[1])
	if _, err := a.Lock(ctx, "cli", "held", dlm.PR); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errb strings.Builder
		code := cli.Main(append([]string{"--run-dir", c.Nodes[0].RunDir}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("lock", "cli", "free", "--", "sh", "-c", "echo inside; exit 3"); code != 3 || !strings.Contains(out, "inside") {
		t.Fatalf("ssi lock: exit %d, %q", code, out)
	}
	if code, out := run("lock", "--nowait", "cli", "held", "--", "true"); code != 1 || !strings.Contains(out, "would block") {
		t.Fatalf("ssi lock --nowait on a held lock: exit %d, %q", code, out)
	}
	if code, out := run("lock", "-m", "PR", "cli", "held", "--", "true"); code != 0 {
		t.Fatalf("ssi lock -m PR: exit %d, %q", code, out)
	}
	// In PW or EX the command gets the lock's fencing token, growing
	// with every grant; in weaker modes none.
	token := func(mode string) uint64 {
		t.Helper()
		code, out := run("lock", "-m", mode, "cli", "fenced", "--", "sh", "-c", `echo "token=[$OPENSSI_LOCK_TOKEN]"`)
		_, v, ok := strings.Cut(out, "token=[")
		v, _, _ = strings.Cut(v, "]")
		n, err := strconv.ParseUint(v, 10, 64)
		if code != 0 || !ok || v != "" && err != nil {
			t.Fatalf("ssi lock -m %s: exit %d, %q", mode, code, out)
		}
		return n
	}
	first, second := token("EX"), token("PW")
	if first == 0 || second <= first {
		t.Fatalf("ssi lock tokens: EX %d, then PW %d: want growing, not 0", first, second)
	}
	if pr := token("PR"); pr != 0 {
		t.Fatalf("ssi lock -m PR: token %d, want none", pr)
	}
	if l, err := a.Lock(ctx, "cli", "fenced", dlm.EX); err != nil || l.Token() <= second {
		t.Fatalf("EX on node %d after ssi lock's: %v, token %d, want above %d", a.Node(), err, l.Token(), second)
	} else if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	code, out := run("locks", "cli")
	if code != 0 || !strings.Contains(out, "held") || !strings.Contains(out, "granted") || !strings.Contains(out, fmt.Sprintf("%d:%d", a.Node(), os.Getpid())) {
		t.Fatalf("ssi locks: exit %d\n%s", code, out)
	}
	t.Logf("ssi locks:\n%s", out)

	// A persistent lock outlives its session as an orphan, which `ssi
	// locks` shows and `ssi locks --purge` releases on its node.
	p := dlmClient(t, ctx, c.Nodes[0])
	if _, err := p.Lock(ctx, "cli", "kept", dlm.EX, dlm.Persistent()); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out := run("locks", "cli"); code != 0 || !strings.Contains(out, "kept") || !strings.Contains(out, "(orphan)") {
		t.Fatalf("ssi locks with an orphan: exit %d\n%s", code, out)
	}
	if _, err := a.Lock(ctx, "cli", "kept", dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
		t.Fatalf("EX NoQueue on the orphan's resource: %v, want ErrWouldBlock", err)
	}
	if code, out := run("locks", "--purge", "--pid", fmt.Sprint(os.Getpid()+1), "cli"); code != 0 || !strings.Contains(out, "released 0 orphaned locks in cli") {
		t.Fatalf("ssi locks --purge --pid of another process: exit %d, %q", code, out)
	}
	if code, out := run("locks", "--purge", "cli"); code != 0 || !strings.Contains(out, "released 1 orphaned lock in cli") {
		t.Fatalf("ssi locks --purge: exit %d, %q", code, out)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.Lock(lctx, "cli", "kept", dlm.EX); err != nil {
		t.Fatalf("EX after the purge: %v", err)
	}
}

// TestDlmUnlockThenClose: Unlock does not wait for dlmd, so a session that
// writes the value block on unlock and closes at once must still have
// its write taken before its session ends (else the next holder reads the
// value block as not valid). The reader keeps an NL lock on every resource,
// as VMS wants to keep a value block when no one else holds the resource.
// The resources are mastered on both nodes: the first node to lock a
// resource becomes its master, so a keeper on the writer's node takes an
// NL lock on every other one first.
func TestDlmUnlockThenClose(t *testing.T) {
	c := startDlm(t, 2, 0)
	ctx := ctxFor(t, 60*time.Second)
	keeper := dlmClient(t, ctx, c.Nodes[0])
	reader := dlmClient(t, ctx, c.Nodes[1])
	for i := range 4 {
		if i%2 == 0 {
			if _, err := keeper.Lock(ctx, "close", fmt.Sprintf("r%d", i), dlm.NL); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := reader.Lock(ctx, "close", fmt.Sprintf("r%d", i), dlm.NL); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		res := fmt.Sprintf("r%d", i%4)
		w, err := dlm.New(ctx, dlm.WithSocket(c.Nodes[0].DlmdSocket()))
		if err != nil {
			t.Fatal(err)
		}
		l, err := w.Lock(ctx, "close", res, dlm.EX, dlm.ValueBlock())
		if err != nil {
			t.Fatal(err)
		}
		var v dlm.Value
		copy(v[:], fmt.Sprintf("round %d", i))
		if err := l.Unlock(ctx, dlm.WriteValue(v)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := reader.Lock(ctx, "close", res, dlm.PR, dlm.ValueBlock())
		if err != nil {
			t.Fatal(err)
		}
		got, valid, ok := r.Value()
		if !ok || !valid || got != v {
			t.Fatalf("round %d: the next holder read %q (valid %v, read %v), want %q", i, got[:8], valid, ok, v[:8])
		}
		if err := r.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDlmAbandonedLock: a Lock whose ctx ends before dlmd's reply must
// not leave the request behind to be granted to the session later: the
// library cancels it (or releases the grant) once the reply names it.
func TestDlmAbandonedLock(t *testing.T) {
	c := startDlm(t, 2, 0)
	ctx := ctxFor(t, 60*time.Second)
	a := dlmClient(t, ctx, c.Nodes[0])
	b := dlmClient(t, ctx, c.Nodes[1])
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 20 {
		if l, err := a.Lock(gone, "abandon", fmt.Sprintf("r%d", i%4), dlm.EX); err == nil {
			_ = l.Unlock(ctx) // a grant that won the race is a grant
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("lock %d with a cancelled ctx: %v", i, err)
		}
	}
	for i := range 4 {
		res := fmt.Sprintf("r%d", i)
		deadline := time.Now().Add(10 * time.Second)
		for {
			l, err := b.Lock(ctx, "abandon", res, dlm.EX, dlm.NoQueue())
			if err == nil {
				_ = l.Unlock(ctx)
				break
			}
			if !errors.Is(err, dlm.ErrWouldBlock) || time.Now().After(deadline) {
				t.Fatalf("%s is still held by the session that gave up on it: %v", res, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestDlmSsiLockLost: when the node holding `ssi lock`'s lock loses it
// (its dlmd fences: the other nodes' dlmd are gone, so no majority answers
// within the lease), ssi lock sends its command SIGTERM and exits 3, as
// README promises.
func TestDlmSsiLockLost(t *testing.T) {
	c := startDlm(t, 3, 0)
	dir := t.TempDir()
	ready, termed := filepath.Join(dir, "ready"), filepath.Join(dir, "termed")
	script := fmt.Sprintf(`trap 'echo term > %s; exit 0' TERM; echo ok > %s; while :; do sleep 0.05; done`, termed, ready)
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		var out, errb strings.Builder
		code := cli.Main([]string{"--run-dir", c.Nodes[0].RunDir, "lock", "-m", "EX", "cli", "lost", "--", "sh", "-c", script}, &out, &errb)
		done <- result{code, out.String() + errb.String()}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("ssi lock ended before its command started: exit %d, %q", r.code, r.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the command under ssi lock did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Node 1's dlmd keeps running; the others' vanish without a goodbye.
	for _, n := range c.Nodes[1:] {
		if err := n.KillDlmd(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-done:
		if r.code != 3 {
			t.Fatalf("ssi lock after its lock was lost: exit %d, want 3 (%q)", r.code, r.out)
		}
		if _, err := os.Stat(termed); err != nil {
			t.Fatalf("the command was not sent SIGTERM: %v (ssi lock said %q)", err, r.out)
		}
		t.Logf("ssi lock: exit 3: %s", strings.TrimSpace(r.out))
	case <-time.After(30 * time.Second):
		t.Fatal("ssi lock did not end within 30 s of its node losing the majority")
	}
}
