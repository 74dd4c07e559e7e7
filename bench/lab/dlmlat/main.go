// Command dlmlat measures uncontended lock+unlock latency from inside a
// lab node: through dlmd (client/dlm) on resources mastered on this node
// and on another node, and through Consul's lock on the node's own agent,
// in the same run. bench/lab copies it into a node and reads its JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/directory"
)

// Result is what dlmlat prints: nanoseconds per lock+unlock pair.
type Result struct {
	Node   int     `json:"node"`
	Local  []int64 `json:"local"`
	Remote []int64 `json:"remote"`
	Consul []int64 `json:"consul"`
}

const lockspace = "bench-lab"

func main() {
	iters := flag.Int("iters", 1000, "lock+unlock pairs per variant")
	flag.Parse()
	r, err := run(*iters)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dlmlat:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func run(iters int) (Result, error) {
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
	slices.Sort(up)
	// A resource mastered here, and one mastered elsewhere.
	pick := func(local bool) string {
		for i := 0; ; i++ {
			name := fmt.Sprintf("lat-%d", i)
			if (directory.Master(up, lockspace, name) == uint32(me.Number)) == local {
				return name
			}
		}
	}
	c, err := dlm.New(ctx)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	res := Result{Node: me.Number}
	for _, v := range []struct {
		out *[]int64
		res string
	}{{&res.Local, pick(true)}, {&res.Remote, pick(false)}} {
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
