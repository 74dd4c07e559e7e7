//go:build e2e

package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/lab"
)

// TestVIP moves a cluster address between two lab nodes with lvsd's VIP
// package (daemons/lvsd/vip, driven by test/e2e/vipctl inside the nodes)
// and checks it from the host, a client on the lab's bridge: the address's
// checks name the problem, the host's neighbour entry follows each
// announcement (seeded with a dead MAC first, as after a failover), and
// exactly the nodes that hold the address answer ARP for it (two when two
// hold it, which lab.WhoHas must see).
func TestVIP(t *testing.T) {
	l := ownLab(t, "e2ev", "10.77.19", 2, "", 20)
	ctx := ctxFor(t, 3*time.Minute)
	bin := filepath.Join(t.TempDir(), "vipctl")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/e2e/vipctl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vipctl: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.State().Nodes {
		if err := os.WriteFile(filepath.Join(n.Root(), "usr/local/bin/vipctl"), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const prefix = "10.77.19.100/24"
	vip := netip.MustParsePrefix(prefix).Addr()
	vipctl := func(node string, args ...string) (string, error) {
		out, err := l.Exec(ctx, node, append([]string{"vipctl"}, args...)...)
		return strings.TrimSpace(out), err
	}
	must := func(node string, args ...string) {
		t.Helper()
		if out, err := vipctl(node, args...); err != nil || out != "ok" {
			t.Fatalf("%s: vipctl %s: %q, %v", node, strings.Join(args, " "), out, err)
		}
	}
	mac := map[string]string{}
	for _, n := range []string{"node1", "node2"} {
		m, err := l.NodeMAC(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		mac[n] = m
	}
	whoHas := func(want ...string) {
		t.Helper()
		got, err := l.WhoHas(vip, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var macs []string
		for _, n := range want {
			macs = append(macs, mac[n])
		}
		slices.Sort(macs)
		if !slices.Equal(got, macs) {
			t.Fatalf("ARP answers for %v from %v, want %v (%v)", vip, got, macs, want)
		}
	}
	hostLearns := func(node string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			n, found, err := l.HostNeighbor(vip)
			if err != nil {
				t.Fatal(err)
			}
			if found && n.MAC == mac[node] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the host's entry for %v is %+v (found %v), want %s's %s", vip, n, found, node, mac[node])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	seedDead := func() {
		t.Helper()
		if out, err := exec.Command("ip", "neigh", "replace", vip.String(), "lladdr", "02:de:ad:00:00:01", "dev", l.State().Bridge, "nud", "stale").CombinedOutput(); err != nil {
			t.Fatalf("seed the host's entry: %v: %s", err, out)
		}
	}

	must("node1", "check", lab.NodeIface, prefix)
	for _, bad := range []struct{ iface, prefix, want string }{
		{lab.NodeIface, "10.78.19.100/24", "vip: 10.78.19.100 is not inside a subnet of host0"},
		{"eth9", prefix, `vip: interface "eth9" does not exist`},
	} {
		if out, err := vipctl("node1", "check", bad.iface, bad.prefix); err == nil || !strings.HasPrefix(out, bad.want) {
			t.Fatalf("check %s %s: %q, %v; want %q", bad.iface, bad.prefix, out, err, bad.want)
		}
	}
	whoHas()

	must("node1", "add", lab.NodeIface, prefix)
	must("node1", "add", lab.NodeIface, prefix) // idempotent
	seedDead()
	must("node1", "announce", lab.NodeIface, prefix)
	hostLearns("node1")
	whoHas("node1")

	// The move: off node1, onto node2, announced; the host had the
	// dead MAC again.
	must("node1", "remove", lab.NodeIface, prefix)
	must("node1", "remove", lab.NodeIface, prefix)
	seedDead()
	must("node2", "add", lab.NodeIface, prefix)
	must("node2", "announce", lab.NodeIface, prefix)
	hostLearns("node2")
	whoHas("node2")

	// Two holders are seen as two.
	must("node1", "add", lab.NodeIface, prefix)
	whoHas("node1", "node2")
	if err := l.FlushHostNeighbor(vip); err != nil {
		t.Fatal(err)
	}
	if _, found, err := l.HostNeighbor(vip); err != nil || found {
		t.Fatalf("after the flush: found %v, %v", found, err)
	}
}
