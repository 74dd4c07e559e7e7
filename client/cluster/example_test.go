package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
	"github.com/openssi/openssi/internal/nodetest"
)

// TestMain runs the examples against a real one-node cluster (a Consul
// server and clmsd), so they are runnable documentation, not prose. Without a
// consul binary every test of the package is skipped (see consultest.MainNeed).
func TestMain(m *testing.M) {
	if consultest.MainNeed(".") == "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "openssi-libcluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err := nodetest.BuildClmsd(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := nodetest.StartCluster(dir, nodetest.Options{Consul: consulagent.Options{Servers: 1}, Clmsd: bin})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv(cluster.SocketEnv, c.Nodes[0].Socket())
	code := m.Run()
	c.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Connect to the local clmsd, ask who we are and what the cluster looks
// like, then follow membership events from the start of the retained
// history.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := cluster.New(ctx) // /run/openssi/clmsd.sock unless OPENSSI_CLMSD_SOCKET says otherwise
	if err != nil {
		fmt.Println(err) // "cluster: clmsd is not running on this node ..."
		return
	}
	defer c.Close()

	me, err := c.ThisNode(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("this is node %d, %s\n", me.Number, me.State)

	view, err := c.Nodes(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d node(s) at epoch %d, quorum %v\n", len(view.Nodes), view.Epoch, view.Quorum)

	// Watch(ctx, view.Epoch) would follow only what happens next; from 0
	// replays the retained history first. Resume after a restart with
	// Watch(ctx, w.Epoch()).
	w := c.Watch(ctx, 0)
	if w.Next() {
		e := w.Event()
		fmt.Printf("epoch %d: %s node %d\n", e.Epoch, e.Type, e.Node.Number)
	}
	// Output:
	// this is node 1, UP
	// 1 node(s) at epoch 1, quorum true
	// epoch 1: NODEUP node 1
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := cluster.New(ctx, cluster.WithSocket(t.TempDir()+"/none.sock")); !errors.Is(err, cluster.ErrNotRunning) ||
		!strings.Contains(err.Error(), "systemctl start openssi-clmsd") {
		t.Fatalf("without clmsd: %v", err)
	}
	c, err := cluster.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Each error says "cluster:" once, then the node, the reason, the
	// detail.
	if _, err := c.Node(ctx, 0); !errors.Is(err, cluster.ErrNoSuchNode) ||
		err.Error() != "cluster: node 0: no such node: node numbers start at 1" {
		t.Fatalf("node 0: %v", err)
	}
	if _, err := c.Node(ctx, 42); !errors.Is(err, cluster.ErrNoSuchNode) ||
		!strings.HasPrefix(err.Error(), "cluster: node 42: no such node: not in the membership at epoch ") {
		t.Fatalf("node 42: %v", err)
	}
	n, err := c.Node(ctx, 1)
	if err != nil || n.Number != 1 || n.State != cluster.Up || n.Since.IsZero() {
		t.Fatalf("node 1: %+v %v", n, err)
	}
}
