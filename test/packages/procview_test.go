//go:build packages

package packages

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/internal/nspawn"
)

// checkProcView: `ssi ps` as a user lists vprocd itself (root's) with its
// cluster pid, and /cluster/proc shows it with standard tools, its
// environment closed to that user; without /dev/fuse vprocd says so and
// runs on.
func checkProcView(ctx context.Context, t *testing.T, c *nspawn.Container, journal func(string) string) {
	t.Helper()
	unit := "openssi-vprocd.service"
	pid, _ := strconv.Atoi(show(t, c, unit)["MainPID"])
	out, err := c.Exec(ctx, "runuser", "-u", "alice", "--", "ssi", "ps", "-o", "json", "-u", "root")
	var rows []proctable.Row
	if err == nil {
		err = json.Unmarshal([]byte(out), &rows)
	}
	var me proctable.Row
	for _, r := range rows {
		if r.PID == int32(pid) {
			me = r
		}
	}
	if err != nil || me.CPID == 0 || len(me.Args) == 0 || me.Args[0] != "/usr/sbin/vprocd" || me.User != "root" {
		t.Fatalf("ssi ps -o json as alice: %v; no row of vprocd (pid %d) in:\n%s\n%s", err, pid, tail([]byte(out), 20), journal(unit))
	}
	if out, err := c.Exec(ctx, "ssi", "ps", "-p", me.CPID.String()); err != nil || !strings.Contains(out, "/usr/sbin/vprocd") {
		t.Errorf("ssi ps -p %d: %v\n%s", me.CPID, err, out)
	}
	if _, err := c.Exec(ctx, "test", "-c", "/dev/fuse"); err != nil {
		if j := journal(unit); !strings.Contains(j, "running without the /cluster/proc view") || !strings.Contains(j, "/dev/fuse is missing") {
			t.Errorf("no /dev/fuse, and vprocd does not say it runs without /cluster/proc:\n%s", j)
		}
		t.Log("no /dev/fuse in the container: /cluster/proc not checked")
		return
	}
	dir := "/cluster/proc/" + me.CPID.String()
	if out, err := c.Exec(ctx, "runuser", "-u", "alice", "--", "sh", "-c", "ls /cluster/proc && cat "+dir+"/node "+dir+"/status"); err != nil ||
		!strings.Contains(out, me.CPID.String()+"\n") || !strings.Contains(out, "Name:\tvprocd\n") {
		t.Errorf("/cluster/proc as alice: %v\n%s\n%s", err, tail([]byte(out), 20), journal(unit))
	}
	if out, err := c.Exec(ctx, "runuser", "-u", "alice", "--", "cat", dir+"/environ"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("alice read root's environ in /cluster/proc: %v\n%s", err, out)
	}
	if out, err := c.Exec(ctx, "findmnt", "-n", "-o", "FSTYPE,OPTIONS", "/cluster/proc"); err != nil || !strings.HasPrefix(out, "fuse.vprocfs") || !strings.Contains(out, "ro") {
		t.Errorf("findmnt /cluster/proc: %v %q", err, out)
	}
	t.Log("/cluster/proc mounted and read")
}

// checkProcUnmounted: once vprocd is stopped, /cluster/proc is no longer a
// mount.
func checkProcUnmounted(ctx context.Context, t *testing.T, c *nspawn.Container) {
	t.Helper()
	if out, err := c.Exec(ctx, "findmnt", "-n", "/cluster/proc"); err == nil {
		t.Errorf("/cluster/proc is still mounted after vprocd stopped: %s", out)
	}
}
