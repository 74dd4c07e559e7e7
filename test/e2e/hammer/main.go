// Command hammer is the dlmd load client of the lab e2e test: it runs
// inside a node and, from several lock sessions with the node's dlmd,
// takes EX locks with the value block on resources picked at random
// (mostly the first, the hot one), adds one to the counter kept in the
// value block and writes it back at the unlock. It logs every critical
// section as a JSON line on stdout (history.Record) for the test's
// checker. It stops when stdin closes (or after -duration), finishing the
// critical section in progress, and exits 0 unless a request failed.
//
// Each client holds an NL lock on every resource for the whole run, so a
// resource and its value block live on between holders (the VMS idiom).
// When a grant says the value block is not valid (a holder died), the
// holder rebuilds the counter from its log: one more than the largest
// value the hammer has seen or written on that resource.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/test/e2e/hammer/history"
)

func main() { os.Exit(run()) }

type config struct {
	node        uint16
	clients     int
	lockspace   string
	resources   []string
	hot         float64
	lockTimeout time.Duration
	hold        time.Duration
}

func run() int {
	var c config
	var node uint
	var resources string
	var duration time.Duration
	flag.UintVar(&node, "node", 0, "this node's index in the test (1..65535), the writer id in value blocks")
	flag.IntVar(&c.clients, "clients", 3, "lock sessions (dlm.Client) on this node")
	flag.StringVar(&c.lockspace, "lockspace", "hammer", "lockspace")
	flag.StringVar(&resources, "resources", "hot,r1,r2,r3", "resources, comma-separated; the first is the hot one")
	flag.Float64Var(&c.hot, "hot", 0.6, "share of critical sections on the hot resource")
	flag.DurationVar(&duration, "duration", 5*time.Minute, "stop after this long even if stdin stays open")
	flag.DurationVar(&c.lockTimeout, "lock-timeout", 45*time.Second, "give up on one lock or unlock request after this long")
	flag.DurationVar(&c.hold, "hold", 0, "time spent inside each critical section")
	flag.Parse()
	c.resources = strings.Split(resources, ",")
	if node == 0 || node > 65535 || c.clients < 1 || c.clients > 65535 || resources == "" {
		fmt.Fprintln(os.Stderr, "hammer: want -node 1..65535, -clients 1..65535 and -resources")
		return 2
	}
	c.node = uint16(node)

	out := &emitter{enc: json.NewEncoder(os.Stdout)}
	out.emit(history.Record{Kind: history.KindStart, ID: history.ID{Node: c.node}, Mono: history.Mono()})

	stop, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	lg := &counts{max: map[string]uint64{}}
	failed := make([]bool, c.clients)
	var wg sync.WaitGroup
	for i := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed[i] = !client(stop, c, uint16(i+1), out, lg)
		}()
	}
	wg.Wait()
	for _, f := range failed {
		if f {
			return 1
		}
	}
	return 0
}

// client runs one lock session until stop ends; false when a request
// failed (logged as a KindError record).
func client(stop context.Context, c config, id uint16, out *emitter, lg *counts) bool {
	me := history.ID{Node: c.node, Client: id}
	fail := func(res, format string, args ...any) bool {
		out.emit(history.Record{Kind: history.KindError, ID: me, Res: res, Msg: fmt.Sprintf(format, args...)})
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.lockTimeout)
	cl, err := dlm.New(ctx)
	cancel()
	if err != nil {
		return fail("", "connect to dlmd: %v", err)
	}
	defer cl.Close()
	for _, r := range c.resources {
		ctx, cancel := context.WithTimeout(context.Background(), c.lockTimeout)
		_, err := cl.Lock(ctx, c.lockspace, r, dlm.NL)
		cancel()
		if err != nil {
			return fail(r, "NL lock: %v", err)
		}
	}
	rnd := rand.New(rand.NewPCG(uint64(c.node), uint64(id)))
	n := 0
	for stop.Err() == nil {
		r := c.resources[0]
		if len(c.resources) > 1 && rnd.Float64() >= c.hot {
			r = c.resources[1+rnd.IntN(len(c.resources)-1)]
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.lockTimeout)
		l, err := cl.Lock(ctx, c.lockspace, r, dlm.EX, dlm.ValueBlock())
		cancel()
		if errors.Is(err, dlm.ErrCancelled) {
			// Its master went silent (powered off): dlmd fails the
			// request rather than let it hang; ask again.
			continue
		}
		if err != nil {
			return fail(r, "EX lock: %v", err)
		}
		t0 := history.Mono()
		v, valid, ok := l.Value()
		if !ok {
			return fail(r, "EX grant with ValueBlock carried no value block")
		}
		n++
		me.Seq = uint64(n)
		rec := history.Record{Kind: history.KindCS, ID: me, Res: r, Valid: valid, T0: t0}
		rec.Read, rec.ReadBy = history.Decode(v)
		if valid {
			rec.Wrote = rec.Read + 1
		} else {
			rec.Wrote = lg.known(r) + 1 // rebuilt from the log
		}
		lg.note(r, rec.Read, valid)
		lg.note(r, rec.Wrote, true)
		if c.hold > 0 {
			time.Sleep(c.hold)
		}
		rec.T1 = history.Mono()
		// Logged before the unlock: a section cut short by a power loss
		// either is in the log or never wrote the value block.
		out.emit(rec)
		ctx, cancel = context.WithTimeout(context.Background(), c.lockTimeout)
		err = l.Unlock(ctx, dlm.WriteValue(history.Encode(rec.Wrote, me)))
		cancel()
		if err != nil {
			return fail(r, "unlock %s: %v", me, err)
		}
	}
	out.emit(history.Record{Kind: history.KindDone, ID: history.ID{Node: c.node, Client: id}, Count: n})
	return true
}

// counts is this hammer's log: the largest counter it has seen or
// written on each resource.
type counts struct {
	mu  sync.Mutex
	max map[string]uint64
}

func (l *counts) known(res string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max[res]
}

func (l *counts) note(res string, v uint64, valid bool) {
	if !valid {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max[res] = max(l.max[res], v)
}

// emitter writes one record per line, each with a single write, so that
// lines written before a power loss reach the test whole.
type emitter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (e *emitter) emit(r history.Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enc.Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "hammer: stdout:", err)
		os.Exit(1)
	}
}
