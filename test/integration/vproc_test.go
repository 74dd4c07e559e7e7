package integration

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/nodetest"
)

func startVproc(t *testing.T, servers int) *nodetest.Cluster {
	t.Helper()
	return nodetest.Start(t, nodetest.Options{
		Consul:   consulagent.Options{Servers: servers},
		Clmsd:    clmsdBin,
		Binaries: map[string]string{"vprocd": vprocdBin},
	})
}

// TestVprocExecAcrossNodes: vprocd binaries on real Consul, with
// certificates from Consul's CA naming each node, run a program of node
// 1's caller on every node; when the node running it is killed, the
// waiting exec ends with 255 at once, long before a second after the
// NODEDOWN.
func TestVprocExecAcrossNodes(t *testing.T) {
	c := startVproc(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	from := c.Nodes[0]
	origin := numberOf(t, ctx, from)
	for _, n := range c.Nodes {
		num := numberOf(t, ctx, n)
		var out bytes.Buffer
		p, err := vproc.Exec(ctx, num, vproc.Cmd{Args: []string{"sh", "-c", "cat; exit 7"}, Stdin: strings.NewReader("hello\n"), Stdout: &out},
			vproc.WithSocket(from.DaemonSocket("vprocd")))
		if err != nil {
			t.Fatalf("exec on node %d: %v", num, err)
		}
		st, err := p.Wait()
		// The cpid is the caller's, on the origin (the test here), which
		// stands for the program.
		if err != nil || st.Code != 7 || out.String() != "hello\n" || p.Node != num || p.Cpid>>22 != int64(origin) {
			t.Fatalf("node %d: status %+v %v, output %q, node %d cpid %d", num, st, err, out.String(), p.Node, p.Cpid)
		}
	}

	victim := c.Nodes[2]
	num := numberOf(t, ctx, victim)
	rec := watch(t, ctx, from, 0)
	p, err := vproc.Exec(ctx, num, vproc.Cmd{Args: []string{"sh", "-c", "echo $$; exec sleep 1000"}}, vproc.WithSocket(from.DaemonSocket("vprocd")))
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr)
	line, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// The node's processes die with it; its programs are in no
	// container here, so kill the one it ran.
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	go io.Copy(io.Discard, p.Stdout)
	type result struct {
		st  vproc.ExitStatus
		err error
	}
	waited := make(chan result, 1)
	go func() {
		st, err := p.Wait()
		waited <- result{st, err}
	}()
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	down, err := rec.waitEvent(ctx, cluster.NodeDown, num)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-waited:
	case <-time.After(time.Second):
		t.Fatalf("exec still waiting 1s after the NODEDOWN of node %d (epoch %d)", num, down.Epoch)
	}
	if r.st.Code != vproc.ExitLost || !errors.Is(r.err, vproc.ErrLost) {
		t.Fatalf("after its node was killed: %+v %v, want 255 and ErrLost", r.st, r.err)
	}
	t.Logf("NODEDOWN %v after the kill; the exec had ended: %s", time.Since(killed).Round(time.Millisecond), r.st.Reason)
}
