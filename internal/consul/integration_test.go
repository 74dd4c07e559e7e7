package consul_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
)

type owner struct {
	Node  string `json:"node"`
	Epoch int    `json:"epoch"`
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestKV(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 1, Clients: 1, NoConnect: true})
	ctx := ctxT(t, 30*time.Second)
	kv := consul.NewKV(c.Agents[1].Client())
	raw := c.Agents[0].Client().KV()

	var got owner
	if _, found, err := kv.Get(ctx, "test/a", &got); err != nil || found {
		t.Fatalf("Get absent: found=%v err=%v", found, err)
	}
	// CAS with index 0 creates only if absent.
	if ok, err := kv.CAS(ctx, "test/a", owner{"node1", 1}, 0); err != nil || !ok {
		t.Fatalf("CAS create: %v %v", ok, err)
	}
	if ok, err := kv.CAS(ctx, "test/a", owner{"node2", 1}, 0); err != nil || ok {
		t.Fatalf("CAS create of an existing key: ok=%v err=%v, want false", ok, err)
	}
	idx, found, err := kv.Get(ctx, "test/a", &got)
	if err != nil || !found || got != (owner{"node1", 1}) || idx == 0 {
		t.Fatalf("Get = %+v idx %d found %v err %v", got, idx, found, err)
	}
	// The value is stored as JSON under openssi/.
	p, _, err := raw.Get("openssi/test/a", nil)
	if err != nil || p == nil || string(p.Value) != `{"node":"node1","epoch":1}` {
		t.Fatalf("raw value %v, %v", p, err)
	}
	// A concurrent writer moves the index: the stale CAS loses.
	if err := kv.Put(ctx, "test/a", owner{"node3", 2}); err != nil {
		t.Fatal(err)
	}
	if ok, err := kv.CAS(ctx, "test/a", owner{"node1", 2}, idx); err != nil || ok {
		t.Fatalf("stale CAS: ok=%v err=%v, want false", ok, err)
	}
	idx2, _, err := kv.Get(ctx, "test/a", &got)
	if err != nil || got != (owner{"node3", 2}) {
		t.Fatalf("after Put: %+v %v", got, err)
	}
	if ok, err := kv.CAS(ctx, "test/a", owner{"node1", 3}, idx2); err != nil || !ok {
		t.Fatalf("fresh CAS: ok=%v err=%v", ok, err)
	}

	// List strips the prefix and keeps key order.
	if err := kv.Put(ctx, "test/b", owner{"node2", 1}); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, "other/c", 7); err != nil {
		t.Fatal(err)
	}
	entries, lidx, err := kv.List(ctx, "test/", consul.Wait{})
	if err != nil || len(entries) != 2 || entries[0].Key != "test/a" || entries[1].Key != "test/b" || lidx == 0 {
		t.Fatalf("List = %+v idx %d err %v", entries, lidx, err)
	}
	if err := entries[1].Decode(&got); err != nil || got != (owner{"node2", 1}) {
		t.Fatalf("Decode = %+v %v", got, err)
	}

	// Garbage written by someone else: the error names the key.
	if _, err := raw.Put(&api.KVPair{Key: "openssi/test/bad", Value: []byte("{not json")}, nil); err != nil {
		t.Fatal(err)
	}
	_, found, err = kv.Get(ctx, "test/bad", &got)
	if !found || !errors.Is(err, consul.ErrDecode) || !strings.Contains(err.Error(), `"test/bad"`) {
		t.Fatalf("Get of garbage: found=%v err=%v", found, err)
	}
	if _, _, err := kv.Get(ctx, "/etc/passwd", &got); !errors.Is(err, consul.ErrInvalidKey) {
		t.Fatalf("Get of a bad key: %v", err)
	}

	// A blocking List returns when the prefix's index moves.
	wrote := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		wrote <- consul.NewKV(c.Agents[0].Client()).Put(ctx, "test/b", owner{"node2", 2})
	}()
	entries, lidx2, err := kv.List(ctx, "test/", consul.Wait{Index: lidx, Time: 10 * time.Second})
	if werr := <-wrote; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || lidx2 <= lidx || len(entries) != 3 {
		t.Fatalf("blocking List = %+v idx %d (was %d) err %v", entries, lidx2, lidx, err)
	}
	if err := kv.Delete(ctx, "test/b"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "test/a"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "test/a"); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
	if _, found, _ := kv.Get(ctx, "test/a", &got); found {
		t.Fatal("test/a still there after Delete")
	}
}

func TestAcquireRelease(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 1, Clients: 2, NoConnect: true})
	ctx := ctxT(t, 30*time.Second)
	c2, c3 := c.Agents[1].Client(), c.Agents[2].Client()
	kv := consul.NewKV(c2)

	s2, err := consul.CreateSession(ctx, c2, "openssi-test", consul.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := consul.CreateSession(ctx, c3, "openssi-test", consul.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := c2.Session().Info(s2, nil)
	if err != nil || info == nil {
		t.Fatalf("session info: %v %v", info, err)
	}
	if info.Node != "node2" || info.TTL != "" || info.Behavior != api.SessionBehaviorRelease ||
		len(info.NodeChecks) != 1 || info.NodeChecks[0] != "serfHealth" || info.LockDelay != consul.DefaultLockDelay {
		t.Fatalf("session %+v: want node2, no TTL, release, NodeChecks [serfHealth], lock-delay 1ms", info)
	}

	if ok, err := kv.Acquire(ctx, "test/lock", s2, owner{"node2", 1}); err != nil || !ok {
		t.Fatalf("Acquire: %v %v", ok, err)
	}
	if ok, err := kv.Acquire(ctx, "test/lock", s3, owner{"node3", 1}); err != nil || ok {
		t.Fatalf("Acquire of a held lock: ok=%v err=%v", ok, err)
	}
	// The holder's session ends: a release-behavior session unlocks the
	// key and keeps its value.
	if err := consul.DestroySession(ctx, c2, s2); err != nil {
		t.Fatal(err)
	}
	var got owner
	if _, _, err := kv.Get(ctx, "test/lock", &got); err != nil || got != (owner{"node2", 1}) {
		t.Fatalf("value after the session ended: %+v %v (release must keep it)", got, err)
	}
	// The other session may take it once the lock-delay (1ms) has passed,
	// measured on the server from the session's end: the first try may
	// land inside it, so try a few times.
	for try := 1; ; try++ {
		ok, err := consul.NewKV(c3).Acquire(ctx, "test/lock", s3, owner{"node3", 1})
		if err == nil && ok {
			break
		}
		if err != nil || try == 20 {
			t.Fatalf("Acquire after the release, try %d: %v %v", try, ok, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := consul.CreateSession(ctx, c2, "x", consul.SessionOptions{Behavior: "explode"}); !errors.Is(err, consul.ErrBehavior) {
		t.Fatalf("bad behavior: %v", err)
	}
}

// TestSessionInvalidatedOnKill SIGKILLs the agent of the node holding locks:
// its serfHealth goes critical, its sessions are invalidated, the key of the
// delete-behavior session disappears and the release-behavior lock can be
// taken by a survivor at once.
func TestSessionInvalidatedOnKill(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 3, Clients: 2})
	ctx := ctxT(t, 60*time.Second)
	victim, survivor := c.Agents[3], c.Agents[4]
	vc, sc := victim.Client(), survivor.Client()

	sDel, err := consul.CreateSession(ctx, vc, "openssi-test-del", consul.SessionOptions{Behavior: api.SessionBehaviorDelete})
	if err != nil {
		t.Fatal(err)
	}
	sRel, err := consul.CreateSession(ctx, vc, "openssi-test-rel", consul.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vkv, skv := consul.NewKV(vc), consul.NewKV(sc)
	if ok, err := vkv.Acquire(ctx, "test/ephemeral", sDel, owner{victim.Name, 1}); err != nil || !ok {
		t.Fatalf("Acquire ephemeral: %v %v", ok, err)
	}
	if ok, err := vkv.Acquire(ctx, "test/claim", sRel, owner{victim.Name, 1}); err != nil || !ok {
		t.Fatalf("Acquire claim: %v %v", ok, err)
	}
	sSurv, err := consul.CreateSession(ctx, sc, "openssi-test-rel", consul.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := skv.Acquire(ctx, "test/claim", sSurv, owner{survivor.Name, 2}); ok {
		t.Fatal("survivor took a live node's claim")
	}

	start := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	// Block on the ephemeral key until it is gone.
	var index uint64
	for {
		p, meta, err := sc.KV().Get("openssi/test/ephemeral", (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if p == nil {
			break
		}
		index = meta.LastIndex
	}
	deleted := time.Since(start)
	// Consul invalidates a node's sessions one Raft write at a time: block
	// until the claim is unlocked, then it must be acquirable at once.
	index = 0
	for {
		p, meta, err := sc.KV().Get("openssi/test/claim", (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if p == nil {
			t.Fatal("release-behavior key deleted")
		}
		if p.Session == "" {
			break
		}
		index = meta.LastIndex
	}
	ok, err := skv.Acquire(ctx, "test/claim", sSurv, owner{survivor.Name, 2})
	took := time.Since(start)
	if err != nil || !ok {
		t.Fatalf("survivor Acquire right after the release: ok=%v err=%v (lock-delay too long?)", ok, err)
	}
	t.Logf("SIGKILL of %s -> delete-behavior key gone after %v; release-behavior claim re-acquired by %s after %v",
		victim.Name, deleted, survivor.Name, took)
	if deleted > 3*time.Second {
		t.Errorf("session invalidation took %v, want about 1s with the Tuned profile", deleted)
	}
	for _, id := range []string{sDel, sRel} {
		if alive, err := sessionExists(ctx, sc, id); err != nil || alive {
			t.Errorf("session %s of the killed node: exists=%v err=%v", id, alive, err)
		}
	}
	if alive, err := sessionExists(ctx, sc, sSurv); err != nil || !alive {
		t.Errorf("survivor session: exists=%v err=%v", alive, err)
	}
}

func sessionExists(ctx context.Context, client *api.Client, id string) (bool, error) {
	se, _, err := client.Session().Info(id, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	return se != nil, err
}

// TestFindSession checks that a restarted daemon adopts its node's session.
func TestFindSession(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 1, Clients: 1, NoConnect: true})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Agents[1].Client()

	if _, found, err := consul.FindSession(ctx, cl, "", "openssi-clmsd"); err != nil || found {
		t.Fatalf("FindSession before create: found=%v err=%v", found, err)
	}
	id, adopted, err := consul.EnsureSession(ctx, cl, "openssi-clmsd", consul.SessionOptions{})
	if err != nil || adopted {
		t.Fatalf("EnsureSession first: %v %v", adopted, err)
	}
	// A session of another name and one on another node do not match.
	if _, err := consul.CreateSession(ctx, cl, "openssi-dlmd", consul.SessionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := consul.CreateSession(ctx, c.Agents[0].Client(), "openssi-clmsd", consul.SessionOptions{}); err != nil {
		t.Fatal(err)
	}

	// "Restart" the daemon: a fresh client finds the same session.
	fresh, err := consul.NewClient(consul.Options{Address: c.Agents[1].HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	got, found, err := consul.FindSession(ctx, fresh, "node2", "openssi-clmsd")
	if err != nil || !found || got != id {
		t.Fatalf("FindSession = %q %v %v, want %q", got, found, err, id)
	}
	got, adopted, err = consul.EnsureSession(ctx, fresh, "openssi-clmsd", consul.SessionOptions{})
	if err != nil || !adopted || got != id {
		t.Fatalf("EnsureSession after restart = %q adopted=%v %v, want %q adopted", got, adopted, err, id)
	}

	if err := consul.DestroySession(ctx, fresh, id); err != nil {
		t.Fatal(err)
	}
	if _, found, err := consul.FindSession(ctx, fresh, "", "openssi-clmsd"); err != nil || found {
		t.Fatalf("FindSession after destroy: found=%v err=%v", found, err)
	}
	if err := consul.DestroySession(ctx, fresh, id); err != nil {
		t.Fatalf("destroying twice: %v", err)
	}
}

func TestWatchWakesOnChange(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 1, Clients: 1, NoConnect: true})
	ctx := ctxT(t, 30*time.Second)
	kv := consul.NewKV(c.Agents[1].Client())
	writer := consul.NewKV(c.Agents[0].Client())

	type update struct {
		entries []consul.Entry
		at      time.Time
	}
	updates := make(chan update, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	interrupt := make(chan struct{})
	go func() {
		done <- consul.Watch(wctx, func(ctx context.Context, wait uint64) (uint64, error) {
			e, index, err := kv.List(ctx, "watched/", consul.Wait{Index: wait, Time: 20 * time.Second})
			if err == nil && (index != wait || wait == 0) {
				updates <- update{e, time.Now()}
			}
			return index, err
		}, consul.WatchOptions{Interrupt: interrupt})
	}()

	next := func() update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(10 * time.Second):
			t.Fatal("no watch update within 10s")
			return update{}
		}
	}
	if u := next(); len(u.entries) != 0 {
		t.Fatalf("initial update %+v, want empty", u.entries)
	}
	for i := 1; i <= 3; i++ {
		start := time.Now()
		if err := writer.Put(ctx, "watched/k", i); err != nil {
			t.Fatal(err)
		}
		var u update
		for {
			u = next()
			var v int
			if len(u.entries) == 1 && u.entries[0].Decode(&v) == nil && v == i {
				break
			}
		}
		t.Logf("watch saw write %d after %v", i, u.at.Sub(start))
	}
	// An interrupt cuts the blocking query short: a fresh read follows at
	// once, well before the 20s wait would end.
	start := time.Now()
	interrupt <- struct{}{}
	if u := next(); len(u.entries) != 1 || u.at.Sub(start) > 5*time.Second {
		t.Fatalf("after an interrupt: %+v after %v", u.entries, u.at.Sub(start))
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
}

func TestLeaderIsNamedFromTheMembers(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 3, Clients: 1, NoConnect: true})
	ctx := ctxT(t, 30*time.Second)
	cfg, err := c.Agents[0].Client().Operator().RaftGetConfiguration((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, s := range cfg.Servers {
		if s.Leader {
			want = s.Node
		}
	}
	if want == "" {
		t.Fatalf("no leader in the Raft configuration %+v", cfg.Servers)
	}
	for _, a := range []*consulagent.Agent{c.Agents[1], c.Agents[3]} { // a server, the client
		addr, err := consul.Leader(ctx, a.Client())
		if err != nil {
			t.Fatal(err)
		}
		members, err := consul.Members(ctx, a.Client())
		if err != nil {
			t.Fatal(err)
		}
		if got := consul.ServerName(members, addr); got != want {
			t.Errorf("at %s: leader %q is %q, want %q", a.Name, addr, got, want)
		}
	}
}
