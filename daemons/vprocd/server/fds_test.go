package server

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
)

// fdKinds counts this process's open descriptors by kind: "pipe",
// "socket", "pidfd", "other".
func fdKinds(t *testing.T) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case err != nil:
			// The directory's own descriptor, closed by now.
		case strings.HasPrefix(l, "pipe:"):
			n["pipe"]++
		case strings.HasPrefix(l, "socket:"):
			n["socket"]++
		case l == "anon_inode:[pidfd]":
			n["pidfd"]++
		default:
			n["other"]++
		}
	}
	return n
}

// TestExecDescriptors pins the descriptors a running exec with its stdio
// passed (as ssi exec passes its pipes, one client each) costs this
// process, where the vprocd of both nodes and the callers run. A local
// exec's program gets the caller's pipes as its own stdio, as a shell's
// child would: vprocd keeps the connection and the program's pidfd, no
// pipe. A remote exec's origin keeps the passed pipes (it relays them) and
// its target the program's pipes.
func TestExecDescriptors(t *testing.T) {
	c := startCluster(t, 2)
	for _, tc := range []struct {
		to   int
		want map[string]int // per exec
	}{
		// Both ends of the caller's gRPC connection and of its
		// exec's own on the exec socket; the program's pidfd (where
		// Go holds one).
		{1, map[string]int{"socket": 4, "pidfd": 1}},
		// And the origin's three passed pipes, the target's three.
		{2, map[string]int{"socket": 4, "pidfd": 1, "pipe": 6}},
	} {
		t.Run(fmt.Sprintf("node 1 -> %d", tc.to), func(t *testing.T) {
			// One exec first: the link between the nodes is made.
			execSleeps(t, c, tc.to, 1)
			const n = 4
			var before map[string]int
			held := execSleeps(t, c, tc.to, n, func() { before = fdKinds(t) })
			after := fdKinds(t)
			hasPidfd := after["pidfd"] > before["pidfd"]
			for _, k := range []string{"socket", "pipe", "pidfd", "other"} {
				want := tc.want[k] * n
				if k == "pidfd" && !hasPidfd {
					want = 0 // a kernel without pidfds
				}
				if got := after[k] - before[k] - held[k]; got != want {
					t.Errorf("%d running execs hold %d more %s descriptors, want %d (%d each); before %v, after %v", n, got, k, want, tc.want[k], before, after)
				}
			}
		})
	}
}

// execSleeps starts n programs that run until the test's end on node to,
// each through its own connection with its stdio passed (pipes); it calls
// ready (when given) once their pipes are made, and returns how
// the descriptors the callers hold themselves changed since.
func execSleeps(t *testing.T, c *testCluster, to, n int, ready ...func()) map[string]int {
	t.Helper()
	type stdio struct{ rs, ws []*os.File }
	files := make([]stdio, n)
	for i := range files {
		files[i].rs, files[i].ws = pipes(t, 3)
	}
	for _, f := range ready {
		f()
	}
	clients := make([]*vproc.Client, n)
	for i := range clients {
		clients[i] = c.client(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i, cl := range clients {
		rs, ws := files[i].rs, files[i].ws
		p, err := cl.Exec(ctx, to, vproc.Cmd{Args: []string{"sh", "-c", "echo ready; exec sleep 1000"}, Stdin: rs[0], Stdout: ws[1], Stderr: ws[2], PassFiles: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _, _ = p.Wait() })
		rs[0].Close()
		ws[1].Close()
		ws[2].Close()
		buf := make([]byte, 6)
		if _, err := rs[1].Read(buf); err != nil || string(buf) != "ready\n" {
			t.Fatalf("read %q %v", buf, err)
		}
	}
	// What vprocd still sets up once the program said ready (its
	// output relays) is done before the program's next write; nothing
	// more is written: wait for the descriptors to settle.
	for prev, deadline := fdKinds(t), time.Now().Add(time.Second); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		cur := fdKinds(t)
		if fmt.Sprint(cur) == fmt.Sprint(prev) {
			break
		}
		prev = cur
	}
	// The callers made their pipes before ready and closed the ends
	// they passed since.
	return map[string]int{"pipe": -3 * n}
}
