package dlm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
	"github.com/openssi/openssi/internal/nodetest"
)

// TestMain runs the examples against a real one-node cluster (a Consul
// server, clmsd and dlmd), so they are runnable documentation. Without a
// consul binary the examples are skipped and the other tests run (see
// consultest.MainNeed).
func TestMain(m *testing.M) {
	if consultest.MainNeed("^Example") == "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "openssi-libdlm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clmsd, err := nodetest.BuildClmsd(dir)
	if err == nil {
		var dlmd string
		if dlmd, err = nodetest.BuildDlmd(dir); err == nil {
			var c *nodetest.Cluster
			c, err = nodetest.StartCluster(dir, nodetest.Options{Consul: consulagent.Options{Servers: 1}, Clmsd: clmsd, Dlmd: dlmd})
			if err == nil {
				os.Setenv(dlm.SocketEnv, c.Nodes[0].DlmdSocket())
				code := m.Run()
				c.Stop()
				os.RemoveAll(dir)
				os.Exit(code)
			}
		}
	}
	fmt.Fprintln(os.Stderr, err)
	os.RemoveAll(dir)
	os.Exit(1)
}

// Take an exclusive lock, keep a counter in its value block, and let a
// second session see it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := dlm.New(ctx) // /run/openssi/dlmd.sock unless OPENSSI_DLMD_SOCKET says otherwise
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	l, err := c.Lock(ctx, "example", "counter", dlm.EX, dlm.ValueBlock())
	if err != nil {
		fmt.Println(err)
		return
	}
	v, valid, _ := l.Value()
	fmt.Printf("holding %s in %v; value valid %v, counter %d\n", l.Resource(), l.Mode(), valid, v[0])

	// Another session (another process, on any node) cannot get it now.
	other, err := dlm.New(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer other.Close()
	_, err = other.Lock(ctx, "example", "counter", dlm.PR, dlm.NoQueue())
	fmt.Println("PR while EX is held:", errors.Is(err, dlm.ErrWouldBlock))

	// The holder is told that someone waits.
	go func() { _, _ = other.Lock(ctx, "example", "counter", dlm.PR) }()
	b := <-c.Blocking()
	fmt.Printf("blocking AST: someone wants %v\n", b.Mode)

	v[0]++
	if err := l.Unlock(ctx, dlm.WriteValue(v)); err != nil {
		fmt.Println(err)
		return
	}
	r, err := other.Lock(ctx, "example", "counter", dlm.PR, dlm.ValueBlock())
	if err != nil {
		fmt.Println(err)
		return
	}
	v, valid, _ = r.Value()
	fmt.Printf("after the unlock: counter %d, valid %v\n", v[0], valid)
	// Output:
	// holding counter in EX; value valid true, counter 0
	// PR while EX is held: true
	// blocking AST: someone wants PR
	// after the unlock: counter 1, valid true
}
