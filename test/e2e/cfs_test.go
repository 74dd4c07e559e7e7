//go:build e2e

package e2e

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openssi/openssi/lab"
)

// cfsTimeout is cfsd.timeout in TestCfs: how long a mount waits for its
// server before an operation fails.
const cfsTimeout = 2 * time.Second

// TestCfs runs cfsd on a lab of its own, three nodes: the lowest-numbered
// node serves the export "home" (a tmpfs there: the nodes' overlay root
// cannot name files by handle), every node mounts it at /cluster/home.
// A file written and closed on one node is read on the others; appends
// from three nodes at once lose and tear no record; a user cannot read
// another's private file from another node; and when the serving node is
// killed, an operation on a client node fails within cfsd.timeout rather
// than hanging, and umount -l detaches the mount.
func TestCfs(t *testing.T) {
	l := ownLab(t, "e2ec", "10.77.23", 3, "openssi-cfsd", 150)
	num := numbers(t, view(t, l, "node1"))
	var names []string
	for _, n := range l.State().Nodes {
		names = append(names, n.Name)
	}
	sort.Slice(names, func(i, j int) bool { return num[names[i]] < num[names[j]] })
	server := names[0]
	keepExec(t, l, server, "sh", "-ec", "mkdir -p /srv/cfs && mount -t tmpfs -o size=64m tmpfs /srv/cfs && mkdir -m 1777 /srv/cfs/home")
	section := fmt.Sprintf("cfsd:\n  timeout: %s\n  exports:\n    - name: home\n      path: /srv/cfs/home\n      mount: /cluster/home\n      server: %d\n", cfsTimeout, num[server])
	var wg sync.WaitGroup
	errs := make([]string, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := l.Exec(ctxFor(t, time.Minute), n, "sh", "-ec",
				`grep -q '^cfsd:' /etc/openssi/openssi.yaml || printf '%s' "$1" >> /etc/openssi/openssi.yaml; systemctl restart openssi-cfsd`, "sh", section)
			if err != nil {
				errs[i] = fmt.Sprintf("%s: %v\n%s", n, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
	for _, n := range names {
		waitMounted(t, l, n)
	}

	t.Run("WrittenOnOneReadOnAll", func(t *testing.T) {
		for _, writer := range names {
			text := "written on " + writer
			keepExec(t, l, writer, "sh", "-ec", `printf '%s' "$1" > /cluster/home/note`, "sh", text)
			for _, reader := range names {
				if got := keepExec(t, l, reader, "cat", "/cluster/home/note"); got != text {
					t.Errorf("%s reads %q after %s wrote %q", reader, got, writer, text)
				}
			}
		}
		if got := keepExec(t, l, server, "cat", "/srv/cfs/home/note"); got != "written on "+names[2] {
			t.Errorf("the export on %s holds %q", server, got)
		}
	})

	t.Run("AppendsFromThreeNodes", func(t *testing.T) {
		const records = 300
		script := `i=0; while [ $i -lt ` + strconv.Itoa(records) + ` ]; do printf '%s %04d %s\n' "$1" $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx >> /cluster/home/log; i=$((i+1)); done`
		var wg sync.WaitGroup
		errs := make([]string, len(names))
		for i, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := l.Exec(ctxFor(t, 2*time.Minute), n, "sh", "-c", script, "sh", n); err != nil {
					errs[i] = fmt.Sprintf("%s: %v\n%s", n, err, out)
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Fatal(e)
			}
		}
		log := keepExec(t, l, names[1], "cat", "/cluster/home/log")
		lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
		next := map[string]int{}
		for i, line := range lines {
			f := strings.Fields(line)
			if len(f) != 3 || len(line) != len(names[0])+1+4+1+51 || f[2] != strings.Repeat("x", 51) {
				t.Fatalf("line %d is torn: %q", i+1, line)
			}
			seq, _ := strconv.Atoi(f[1])
			if seq != next[f[0]] {
				t.Fatalf("line %d: %s's record %d, want %d (one lost or repeated)", i+1, f[0], seq, next[f[0]])
			}
			next[f[0]]++
		}
		for _, n := range names {
			if next[n] != records {
				t.Errorf("%s: %d records of %d", n, next[n], records)
			}
		}
	})

	t.Run("PermissionsAcrossNodes", func(t *testing.T) {
		keepExec(t, l, names[0], "sh", "-ec", "umask 077; echo secret > /cluster/home/private")
		out, err := l.Exec(ctxFor(t, time.Minute), names[1], "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", "/cluster/home/private")
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody on %s reads root's 0600 file: %v\n%s", names[1], err, out)
		}
		keepExec(t, l, names[2], "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-ec", "echo mine > /cluster/home/nobodys")
		if got := keepExec(t, l, server, "stat", "-c", "%U:%G %a", "/srv/cfs/home/nobodys"); strings.TrimSpace(got) != "nobody:nogroup 644" {
			t.Errorf("a file nobody made on %s is %q on the server", names[2], got)
		}
	})

	t.Run("ServerKilled", func(t *testing.T) {
		if err := l.Kill(ctxFor(t, time.Minute), server); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := l.Exec(ctxFor(t, time.Minute), names[1], "stat", "/cluster/home/note")
		took := time.Since(start)
		if err == nil || !strings.Contains(out, "Input/output error") {
			t.Errorf("stat on %s with its server dead: %v\n%s", names[1], err, out)
		}
		// The deadline, plus a round of gRPC's reconnection and the
		// lab's exec.
		if took > cfsTimeout+3*time.Second {
			t.Errorf("stat on %s took %v with the server dead (cfsd.timeout %v)", names[1], took, cfsTimeout)
		}
		t.Logf("stat on %s failed %v after its server's SIGKILL", names[1], took.Round(time.Millisecond))
		keepExec(t, l, names[2], "umount", "-l", "/cluster/home")
	})
}

// waitMounted waits until node's /cluster/home is cfsd's mount, at most
// a minute.
func waitMounted(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := l.Exec(ctxFor(t, time.Minute), node, "findmnt", "-n", "-o", "FSTYPE", "/cluster/home")
		if strings.TrimSpace(out) == "fuse.cfs" {
			return
		}
		if time.Now().After(deadline) {
			st, _ := l.Exec(ctxFor(t, time.Minute), node, "systemctl", "status", "--no-pager", "openssi-cfsd")
			t.Fatalf("%s: /cluster/home is not mounted after a minute (%q):\n%s", node, out, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
