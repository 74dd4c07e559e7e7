//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRollingUpgrade rolls newer packages out node by node: membership
// never loses a majority, every unit comes back active, no node number
// changes. go test runs tests in file-name order, so this one, which
// changes the installed version, runs after the others.
func TestRollingUpgrade(t *testing.T) {
	five := fiveLab(t)
	attachLogs(t, five)
	checkAllUp(t, five, 5)
	before := numbers(t, view(t, five, "node1"))
	v0 := strings.TrimSpace(mustExec(t, "node1", "dpkg-query", "-W", "-f=${Version}", "openssi"))
	newer := v0 + ".1"
	if err := buildRepo(dist, newer); err != nil {
		t.Fatal(err)
	}

	// The membership at node1 during the roll: the nodes UP after every
	// event.
	total := 5
	f := follow(t, five, "node1", view(t, five, "node1").Epoch)
	if err := five.Upgrade(ctxFor(t, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	minUp := fewestUp(f.Events(), total)
	for _, n := range five.State().Nodes {
		if got := strings.TrimSpace(mustExec(t, n.Name, "dpkg-query", "-W", "-f=${Version}", "openssi")); got != newer {
			t.Fatalf("%s runs openssi %s, want %s", n.Name, got, newer)
		}
		if err := five.WaitUnitsActive(ctxFor(t, time.Minute), n.Name, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	checkAllUp(t, five, 5)
	after := numbers(t, view(t, five, "node1"))
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("node numbers changed: %v -> %v", before, after)
	}
	t.Logf("rolled %s -> %s; events at node1: %s; fewest nodes UP during the roll: %d of %d", v0, newer, f.Summary(), minUp, total)
	if minUp <= total/2 {
		t.Fatalf("membership lost its majority during the upgrade: %d of %d UP", minUp, total)
	}
}

func mustExec(t *testing.T, node string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := fiveLab(t).Exec(ctx, node, args...)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", node, strings.Join(args, " "), err, out)
	}
	return out
}
