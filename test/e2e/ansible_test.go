//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/lab"
)

// TestAnsible rolls OpenSSI out the way an administrator does, with the
// playbooks under ansible/, onto bare lab nodes (sshd and Python, neither
// Consul nor openssi), the repository, Consul and Debian served from this
// machine: site.yml makes a 3-node cluster and a second run changes
// nothing; add-node.yml brings a fourth node in; upgrade.yml rolls a newer
// package out without losing a majority; remove-node.yml takes the fourth
// node out with a NODELEAVE. It logs the figures of README's benchmark:
// site.yml from bare nodes to 3 UP, and the no-change run.
func TestAnsible(t *testing.T) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Fatal("ansible-playbook not found: apt-get install ansible-core")
	}
	releaseFive(t)
	dir := t.TempDir()
	l, err := openLab(filepath.Join(dir, "lab"), "e2ea", "10.77.15")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Down(context.Background()) })
	// The daemons' journals: the whole journal's tail is the playbook's
	// module calls, which its own output already shows.
	attachUnitLogs(t, l, "openssi-*", 40)
	start := time.Now()
	if err := l.UpBare(ctxFor(t, 3*time.Minute), 3); err != nil {
		t.Fatal(err)
	}
	t.Logf("3 bare nodes reachable over SSH in %s", time.Since(start).Round(100*time.Millisecond))
	srv, err := l.Serve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	a := &alab{l: l, srv: srv, dir: dir}

	t0 := time.Now()
	first := a.play(t, "site.yml")
	checkAllUp(t, l, 3)
	toUp := time.Since(t0)
	a.noACLDenials(t)
	second := a.play(t, "site.yml")
	if n := second.Changed(); n != 0 {
		t.Errorf("a second site.yml run changed %d tasks, want 0:\n%s", n, strings.Join(second.Tasks("changed"), "\n"))
	}
	t.Logf("site.yml: bare nodes to 3 UP on every node in %s (the playbook %s); second run %s, changed=%d",
		toUp.Round(100*time.Millisecond), first.Took.Round(100*time.Millisecond), second.Took.Round(100*time.Millisecond), second.Changed())
	if t.Failed() {
		t.FailNow()
	}
	for _, c := range []struct {
		name string
		f    func(*testing.T, *alab)
	}{
		{"StaleHold", testAnsibleStaleHold},
		{"AddNode", testAnsibleAddNode},
		{"Upgrade", testAnsibleUpgrade},
		{"RemoveNode", testAnsibleRemoveNode},
		{"BadInput", testAnsibleBadInput},
	} {
		t1 := time.Now()
		if !t.Run(c.name, func(t *testing.T) { c.f(t, a) }) {
			t.FailNow() // each step starts from the last one's cluster
		}
		t.Logf("%s took %s", c.name, time.Since(t1).Round(100*time.Millisecond))
	}
}

// alab is the lab of TestAnsible.
type alab struct {
	l   *lab.Lab
	srv *lab.Server
	dir string
}

// run writes the lab's inventory (it grows with the nodes) and runs a
// playbook of ansible/ with it.
func (a *alab) run(t *testing.T, playbook string, args ...string) (lab.PlaybookRun, error) {
	t.Helper()
	inv, err := a.l.Inventory(nil)
	if err != nil {
		t.Fatal(err)
	}
	invFile := filepath.Join(a.dir, "inventory.yml")
	if err := os.WriteFile(invFile, inv, 0o600); err != nil {
		t.Fatal(err)
	}
	return lab.RunPlaybook(ctxFor(t, 10*time.Minute), filepath.Join(root, "ansible"), filepath.Join(a.dir, "ansible"), invFile, playbook, args...)
}

// play runs a playbook that must succeed.
func (a *alab) play(t *testing.T, playbook string, args ...string) lab.PlaybookRun {
	t.Helper()
	run, err := a.run(t, playbook, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s, changed=%d", strings.Join(append([]string{playbook}, args...), " "), run.Took.Round(100*time.Millisecond), run.Changed())
	return run
}

// playFails runs a playbook that must fail.
func (a *alab) playFails(t *testing.T, playbook string, args ...string) lab.PlaybookRun {
	t.Helper()
	run, err := a.run(t, playbook, args...)
	if err == nil {
		t.Fatalf("%s %s succeeded, want a failure", playbook, strings.Join(args, " "))
	}
	t.Logf("%s failed as it should: %s", strings.Join(append([]string{playbook}, args...), " "), strings.Join(append(run.Tasks("fatal"), run.Tasks("failed")...), "; "))
	return run
}

// testAnsibleStaleHold leaves the hold of a first install in place, as a
// run killed between the package's install and the release would, with
// openssi.target stopped: the next site.yml run must lift it and start
// the node again.
func testAnsibleStaleHold(t *testing.T, a *alab) {
	const hold = "/run/systemd/system/openssi.target.d/ansible-hold.conf"
	a.exec(t, "node3", "sh", "-ec", `systemctl stop openssi.target 'openssi-*.service'
mkdir -p "${1%/*}"; printf '[Unit]\nRefuseManualStart=yes\n' > "$1"; systemctl daemon-reload`, "sh", hold)
	a.play(t, "site.yml", "--limit", "node3")
	if out, err := a.l.Exec(ctxFor(t, time.Minute), "node3", "test", "!", "-e", hold); err != nil {
		t.Errorf("node3: the hold %s is still there after site.yml: %v %s", hold, err, out)
	}
	checkAllUp(t, a.l, 3)
}

// testAnsibleAddNode boots a fourth bare node and brings it in with
// add-node.yml: every node sees 4 UP with distinct numbers.
func testAnsibleAddNode(t *testing.T, a *alab) {
	before := numbers(t, view(t, a.l, "node1"))
	n, err := a.l.AddBare(ctxFor(t, 2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	f := follow(t, a.l, "node1", view(t, a.l, "node1").Epoch)
	a.play(t, "add-node.yml", "-e", "openssi_new_node="+n.Name)
	checkAllUp(t, a.l, 4)
	after := numbers(t, view(t, a.l, "node1"))
	num, ok := after[n.Name]
	if !ok {
		t.Fatalf("%s is not a member: %v", n.Name, after)
	}
	for name, number := range before {
		if after[name] != number {
			t.Errorf("%s's number changed from %d to %d", name, number, after[name])
		}
	}
	if _, err := f.Wait(cluster.NodeUp, num, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s joined as node number %d; numbers %v; events at node1: %s", n.Name, num, after, f.Summary())
}

// testAnsibleUpgrade serves packages of a newer version and rolls them
// out with upgrade.yml while a watcher counts the members UP at node1
// after every event: a majority stays UP throughout, every node ends on
// the new version with every unit active, and no number changes.
func testAnsibleUpgrade(t *testing.T, a *alab) {
	nodes := a.l.State().Nodes
	total := len(nodes)
	before := numbers(t, view(t, a.l, "node1"))
	v0 := strings.TrimSpace(a.exec(t, "node1", "dpkg-query", "-W", "-f=${Version}", "openssi"))
	newer := v0 + ".1"
	newDist := filepath.Join(a.dir, "dist-newer")
	if err := buildRepo(newDist, newer); err != nil {
		t.Fatal(err)
	}
	a.srv.SetRepo(filepath.Join(newDist, "repo"))

	f := follow(t, a.l, "node1", view(t, a.l, "node1").Epoch)
	a.play(t, "upgrade.yml")
	minUp := fewestUp(f.Events(), total)
	for _, n := range nodes {
		if got := strings.TrimSpace(a.exec(t, n.Name, "dpkg-query", "-W", "-f=${Version}", "openssi")); got != newer {
			t.Errorf("%s runs openssi %s, want %s", n.Name, got, newer)
		}
		if err := a.l.WaitUnitsActive(ctxFor(t, time.Minute), n.Name, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	checkAllUp(t, a.l, total)
	if after := numbers(t, view(t, a.l, "node1")); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("node numbers changed: %v -> %v", before, after)
	}
	t.Logf("rolled %s -> %s; events at node1: %s; fewest nodes UP during the roll: %d of %d", v0, newer, f.Summary(), minUp, total)
	if minUp <= total/2 {
		t.Errorf("membership lost its majority during the upgrade: %d of %d UP", minUp, total)
	}
}

// testAnsibleRemoveNode takes the fourth node out with remove-node.yml:
// the others see a NODELEAVE (not a NODEDOWN) for it, and its packages
// are gone.
func testAnsibleRemoveNode(t *testing.T, a *alab) {
	nodes := a.l.State().Nodes
	last := nodes[len(nodes)-1]
	num := numbers(t, view(t, a.l, "node1"))[last.Name]
	f := follow(t, a.l, "node1", view(t, a.l, "node1").Epoch)
	t0 := time.Now()
	a.play(t, "remove-node.yml", "-e", "openssi_remove_node="+last.Name)
	at, err := f.Wait(cluster.NodeLeave, num, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Events() {
		if e.Event.Type == cluster.NodeDown && e.Event.Node.Number == num {
			t.Errorf("node1 saw NODEDOWN for %s (number %d), want only a NODELEAVE: %s", last.Name, num, f.Summary())
		}
	}
	out, _ := a.l.Exec(ctxFor(t, 30*time.Second), last.Name, "dpkg-query", "-W", "-f=${Status}", "openssi")
	if strings.Contains(out, "install ok installed") {
		t.Errorf("%s still has openssi installed after remove-node.yml", last.Name)
	}
	v := view(t, a.l, "node1")
	var up []string
	for _, m := range v.Nodes {
		if m.State == cluster.Up {
			up = append(up, m.Name)
		}
	}
	sort.Strings(up)
	if len(up) != len(nodes)-1 || !v.Quorum {
		t.Errorf("after the removal node1 sees %s, want %d UP with quorum", v.Summary(), len(nodes)-1)
	}
	t.Logf("NODELEAVE of %s (number %d) at node1 %s after the playbook began; UP: %v", last.Name, num, at.Sub(t0).Round(time.Millisecond), up)
}

// testAnsibleBadInput: a missing required variable stops site.yml before
// anything changes, with a message naming it; a host that cannot reach
// the repository fails with the URL it tried (the removed fourth node,
// brought back with a wrong repository).
func testAnsibleBadInput(t *testing.T, a *alab) {
	run := a.playFails(t, "site.yml", "-e", "openssi_apt_repo_url=")
	if n := run.Changed(); n != 0 {
		t.Errorf("site.yml without openssi_apt_repo_url changed %d tasks before stopping:\n%s", n, strings.Join(run.Tasks("changed"), "\n"))
	}
	if want := "the required variable openssi_apt_repo_url is not set"; !strings.Contains(run.Output, want) {
		t.Errorf("site.yml without openssi_apt_repo_url does not say %q:\n%s", want, strings.Join(append(run.Tasks("fatal"), run.Tasks("failed")...), "\n"))
	}
	nodes := a.l.State().Nodes
	last := nodes[len(nodes)-1].Name
	bad := lab.ServedAt(a.l.State().Subnet).Base + "/openssi/missing/apt"
	run = a.playFails(t, "add-node.yml", "-e", "openssi_new_node="+last, "-e", "openssi_apt_repo_url="+bad)
	if !strings.Contains(run.Output, bad) {
		t.Errorf("add-node.yml with an unreachable repository does not name %s:\n%s", bad, strings.Join(run.Tasks("fatal"), "\n"))
	}
}

// noACLDenials fails when an openssi daemon was refused by Consul's ACLs
// (aclDenial) since the lab booted: site.yml must create each
// node's tokens and policies before the daemons first start.
func (a *alab) noACLDenials(t *testing.T) {
	t.Helper()
	for _, n := range a.l.State().Nodes {
		journal := a.exec(t, n.Name, "journalctl", "--no-pager", "-o", "cat", "-u", "openssi-*")
		var denied []string
		for _, line := range strings.Split(journal, "\n") {
			if aclDenial(line) {
				denied = append(denied, line)
			}
		}
		if len(denied) > 0 {
			t.Errorf("%s: the openssi daemons were refused by Consul %d times after site.yml (they started before their tokens existed), first: %s",
				n.Name, len(denied), denied[0])
		}
	}
}

func (a *alab) exec(t *testing.T, node string, args ...string) string {
	t.Helper()
	out, err := a.l.Exec(ctxFor(t, time.Minute), node, args...)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", node, strings.Join(args, " "), err, out)
	}
	return out
}
