// Command dlmlat measures uncontended lock+unlock latency from inside a
// lab node: through dlmd (client/dlm) on a resource mastered on this node
// and on one mastered on another node, and through Consul's lock on the
// node's own agent, in the same run. bench/lab copies it into a node and
// reads its JSON.
//
// The first node to lock a resource that no node masters becomes its
// master (first-requester mastering), and stays it while the resource has
// locks. dlmlat masters its local resource by locking it first (a second
// session takes an NL lock on a fresh name and keeps it for the run); the
// remote one, named by -remote, is held NL by a client on another node,
// which bench/lab starts first. dlmd's Locks API (as `ssi locks` shows it)
// must confirm both before and after the pairs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// Result is what dlmlat prints: nanoseconds per lock+unlock pair.
type Result struct {
	Node   int     `json:"node"`
	Local  []int64 `json:"local"`
	Remote []int64 `json:"remote"`
	Consul []int64 `json:"consul"`
}

// lockspace is dlmlat's lockspace (bench/lab holds the remote resource in
// it).
const lockspace = "bench-lab"

func main() {
	iters := flag.Int("iters", 1000, "lock+unlock pairs per variant")
	remote := flag.String("remote", "", "a resource of lockspace "+lockspace+" that another node masters and holds (NL) for the whole run")
	flag.Parse()
	if *remote == "" {
		fmt.Fprintln(os.Stderr, "dlmlat: -remote is required")
		os.Exit(2)
	}
	r, err := run(*iters, *remote)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dlmlat:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// socket is dlmd's local API socket, as client/dlm finds it.
func socket() string {
	if s := os.Getenv(dlm.SocketEnv); s != "" {
		return s
	}
	return dlm.DefaultSocket
}

// master asks dlmd (its Locks API, which gathers every master's
// resources) which node masters res; res must have locks.
func master(ctx context.Context, res string) (uint32, error) {
	conn, err := localapi.Dial(ctx, socket())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	r, err := dlmv1.NewDlmClient(conn).Locks(ctx, &dlmv1.LocksRequest{Lockspace: lockspace})
	if err != nil {
		return 0, fmt.Errorf("dlmd Locks: %w", err)
	}
	for _, x := range r.GetResources() {
		if x.GetLockspace() == lockspace && string(x.GetName()) == res {
			return x.GetMaster(), nil
		}
	}
	return 0, fmt.Errorf("dlmd lists no lock on %s/%s (nodes that did not answer: %v)", lockspace, res, r.GetErrors())
}

func run(iters int, remote string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cl, err := cluster.New(ctx)
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	me, err := cl.ThisNode(ctx)
	if err != nil {
		return Result{}, err
	}
	v, err := cl.Nodes(ctx)
	if err != nil {
		return Result{}, err
	}
	var up []uint32
	for _, n := range v.Nodes {
		if n.State == cluster.Up {
			up = append(up, uint32(n.Number))
		}
	}
	// A fresh local resource whose directory node (the rendezvous-hash
	// winner) is this node too: that changes nothing once the master is
	// known, and keeps the choice right where the hash winner masters.
	local := ""
	for i := 0; local == ""; i++ {
		if name := fmt.Sprintf("lat-local-%d", i); name != remote && directory.Master(up, lockspace, name) == uint32(me.Number) {
			local = name
		}
	}
	keeper, err := dlm.New(ctx)
	if err != nil {
		return Result{}, err
	}
	defer keeper.Close()
	if _, err := keeper.Lock(ctx, lockspace, local, dlm.NL); err != nil {
		return Result{}, err
	}
	// check fails unless res is mastered here (local) or elsewhere.
	check := func(res string, local bool, when string) error {
		m, err := master(ctx, res)
		if err != nil {
			return fmt.Errorf("%s: %w", when, err)
		}
		if (m == uint32(me.Number)) != local {
			where := "another node"
			if local {
				where = "this node"
			}
			return fmt.Errorf("%s: dlmd reports %s/%s mastered on node %d; this is node %d, want %s", when, lockspace, res, m, me.Number, where)
		}
		return nil
	}
	c, err := dlm.New(ctx)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	res := Result{Node: me.Number}
	for _, v := range []struct {
		out   *[]int64
		res   string
		local bool
	}{{&res.Local, local, true}, {&res.Remote, remote, false}} {
		if err := check(v.res, v.local, "before the pairs"); err != nil {
			return res, err
		}
		for i := 0; i < iters+iters/10; i++ { // the first tenth warms up
			t0 := time.Now()
			l, err := c.Lock(ctx, lockspace, v.res, dlm.EX)
			if err != nil {
				return res, err
			}
			if err := l.Unlock(ctx); err != nil {
				return res, err
			}
			if i >= iters/10 {
				*v.out = append(*v.out, int64(time.Since(t0)))
			}
		}
		if err := check(v.res, v.local, "after the pairs"); err != nil {
			return res, err
		}
	}
	cc, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		return res, err
	}
	sess, _, err := cc.Session().Create(&api.SessionEntry{Name: "dlmlat", LockDelay: time.Millisecond}, nil)
	if err != nil {
		return res, fmt.Errorf("consul session: %w", err)
	}
	defer func() { _, _ = cc.Session().Destroy(sess, nil) }()
	lk, err := cc.LockOpts(&api.LockOptions{Key: "openssi-bench/lab/lat", Session: sess, LockWaitTime: time.Second})
	if err != nil {
		return res, err
	}
	for i := 0; i < iters/4+iters/40; i++ { // Consul is ten times slower: fewer pairs
		t0 := time.Now()
		if _, err := lk.Lock(nil); err != nil {
			return res, err
		}
		if err := lk.Unlock(); err != nil {
			return res, err
		}
		if i >= iters/40 {
			res.Consul = append(res.Consul, int64(time.Since(t0)))
		}
	}
	return res, nil
}
