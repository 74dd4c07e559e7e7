//go:build packages

package packages

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/consultest"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/nspawn"
	"github.com/openssi/openssi/packaging"
)

const consulHCL = `# Single-server Consul for the boot test.
server = true
bootstrap_expect = 1
data_dir = "/var/lib/consul"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
log_level = "WARN"
disable_update_check = true
connect {
  enabled = true
}
`

const consulUnit = `[Unit]
Description=Consul agent (boot test)
Wants=network-online.target
After=network-online.target

[Service]
# A lone server without retry_join never sends READY=1.
Type=exec
ExecStart=/usr/local/bin/consul agent -config-dir=/etc/consul.d
Restart=on-failure

[Install]
WantedBy=multi-user.target
`

// installConsul puts the pinned Consul into the rootfs as consul.service.
func installConsul(t *testing.T, root string) {
	t.Helper()
	bin, err := os.ReadFile(consultest.Need(t))
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"usr/local/bin/consul", bin, 0o755},
		{"etc/consul.d/consul.hcl", []byte(consulHCL), 0o644},
		{"etc/systemd/system/consul.service", []byte(consulUnit), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/consul.service", filepath.Join(wants, "consul.service")); err != nil {
		t.Fatal(err)
	}
}

// TestBoot boots the bookworm rootfs under real systemd with a Consul
// agent, installs openssi with apt (postinst with systemd running), starts
// openssi.target, checks every unit is active (READY=1 received), that a
// daemon that stops feeding the watchdog is restarted, that `ssi nodes`
// shows the node UP and that an upgrade restarts the running daemons.
func TestBoot(t *testing.T) {
	b := packages(t)
	root := image(t)
	installConsul(t, root)
	repo := filepath.Join(t.TempDir(), "repo")
	publish(t, repo, root, b.v1, b.v2)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	start := time.Now()
	logf, err := os.Create(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nspawn.Boot(ctx, nspawn.Options{Dir: root, Name: "openssi-boot-test", PrivateNetwork: true, Log: logf,
		Binds: append([]nspawn.Bind{{Host: repo, Container: repoInContainer, ReadOnly: true}}, nspawn.FUSEBinds()...)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	if state, err := c.WaitSystemRunning(ctx); err != nil {
		t.Fatalf("boot to multi-user: %s: %v", state, err)
	}
	t.Logf("booted in %v", time.Since(start).Round(time.Millisecond))
	ex := func(args ...string) string {
		t.Helper()
		out, err := c.Exec(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	journal := func(unit string) string {
		out, _ := c.Exec(ctx, "journalctl", "--no-pager", "-n", "40", "-u", unit)
		return out
	}
	// Consul up with a leader and the Connect CA.
	if !eventually(ctx, 60*time.Second, func() bool {
		out, err := c.Exec(ctx, "consul", "kv", "put", "openssi-boot-test", "ok")
		return err == nil && strings.Contains(out, "Success")
	}) {
		t.Fatalf("consul did not come up:\n%s", journal("consul"))
	}

	// Install with systemd running: the postinst enables and starts the
	// target without blocking.
	ex("apt-get", "update", "-q", "-o", "Acquire::Languages=none")
	ex("apt-get", "install", "-y", "-q", "openssi="+b.v1.Version)
	// The postinst started the target in the background: let that start
	// finish (clmsd stopped before READY=1 exits 1 — see the report), then
	// stop it so that the start below is the one measured and checked.
	ex("systemctl", "start", packaging.Target)
	ex("systemctl", "stop", packaging.Target)
	// The target stops first (the services are Before= it), so systemctl
	// returns before the services' stop jobs are done: wait for them.
	for _, d := range daemons.All {
		eventually(ctx, 30*time.Second, func() bool { return show(t, c, d.Unit)["ActiveState"] == "inactive" })
		if st := show(t, c, d.Unit); st["ActiveState"] != "inactive" {
			t.Errorf("%s: %v after stopping %s (PartOf=)\n%s", d.Unit, st, packaging.Target, journal(d.Unit))
		}
	}
	start = time.Now()
	startCtx, startCancel := context.WithTimeout(ctx, 90*time.Second)
	out, err := c.Exec(startCtx, "systemctl", "start", packaging.Target)
	startCancel()
	if err != nil {
		t.Fatalf("systemctl start %s: %v\n%s\n%s", packaging.Target, err, out, journal("openssi-clmsd"))
	}
	t.Logf("openssi.target active in %v", time.Since(start).Round(time.Millisecond))
	for _, d := range daemons.All {
		if st := show(t, c, d.Unit); st["ActiveState"] != "active" || st["SubState"] != "running" {
			t.Errorf("%s: %v\n%s", d.Unit, st, journal(d.Unit))
		}
	}
	if st := show(t, c, packaging.Target); st["ActiveState"] != "active" {
		t.Errorf("%s: %v", packaging.Target, st)
	}
	if !eventually(ctx, 30*time.Second, func() bool {
		out, err := c.Exec(ctx, "ssi", "nodes")
		return err == nil && strings.Contains(out, "UP")
	}) {
		out, err := c.Exec(ctx, "ssi", "nodes")
		t.Errorf("ssi nodes does not show the node UP: %v\n%s\n%s", err, out, journal("openssi-clmsd"))
	}

	checkUnprivileged(ctx, t, c, ex, journal)
	checkProcView(ctx, t, c, journal)

	// Watchdog: a stopped clmsd (SIGSTOP) stops pinging; systemd restarts it.
	unit := "openssi-clmsd.service"
	dropIn := filepath.Join(root, "etc/systemd/system", unit+".d", "watchdog-test.conf")
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte("[Service]\nWatchdogSec=3s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ex("systemctl", "daemon-reload")
	ex("systemctl", "restart", unit)
	before := show(t, c, unit)
	pid := before["MainPID"]
	if pid == "" || pid == "0" {
		t.Fatalf("%s has no main PID after restart: %v", unit, before)
	}
	start = time.Now()
	ex("sh", "-c", "kill -STOP "+pid) // no kill(1) in a minimal system: the shell builtin
	if !eventually(ctx, 60*time.Second, func() bool {
		st := show(t, c, unit)
		return st["MainPID"] != pid && st["MainPID"] != "0" && st["ActiveState"] == "active"
	}) {
		t.Fatalf("%s was not restarted after its watchdog lapsed: %v\n%s", unit, show(t, c, unit), journal(unit))
	}
	after := show(t, c, unit)
	if n, _ := strconv.Atoi(after["NRestarts"]); n < 1 {
		t.Errorf("NRestarts = %s after the watchdog restart", after["NRestarts"])
	}
	// The goroutine dump fills the journal: read all of it.
	if j, _ := c.Exec(ctx, "journalctl", "--no-pager", "-u", unit); !strings.Contains(j, "Failed with result 'watchdog'") {
		t.Errorf("journal of %s shows no watchdog failure:\n%s", unit, tail([]byte(j), 30))
	}
	t.Logf("watchdog restart after %v", time.Since(start).Round(time.Millisecond))
	if err := os.Remove(dropIn); err != nil {
		t.Fatal(err)
	}
	ex("systemctl", "daemon-reload")

	// Upgrade: the running daemons restart (new main PIDs).
	pids := map[string]string{}
	for _, d := range daemons.All {
		pids[d.Unit] = show(t, c, d.Unit)["MainPID"]
	}
	ex("apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold", "openssi="+b.v2.Version)
	for _, d := range daemons.All {
		if !eventually(ctx, 60*time.Second, func() bool {
			st := show(t, c, d.Unit)
			return st["ActiveState"] == "active" && st["MainPID"] != pids[d.Unit] && st["MainPID"] != "0"
		}) {
			t.Errorf("%s not restarted by the upgrade: %v", d.Unit, show(t, c, d.Unit))
		}
	}

	// Remove: stopped and disabled.
	ex("apt-get", "remove", "-y", "-q", "openssi")
	for _, d := range daemons.All {
		if st := show(t, c, d.Unit); st["ActiveState"] == "active" {
			t.Errorf("%s still active after remove", d.Unit)
		}
	}
	checkProcUnmounted(ctx, t, c)
	stopCtx, stopCancel := context.WithTimeout(ctx, 60*time.Second)
	defer stopCancel()
	if err := c.Stop(stopCtx); err != nil {
		t.Errorf("poweroff: %v", err)
	}
}

// checkUnprivileged: clmsd and dlmd run as user openssi (vprocd as root)
// under their
// limits, a member of the socket group reaches them, a token file placed
// at /etc/openssi/consul.token reaches the daemons as their credential
// while the file stays root's, and state a root-run version left is
// taken over on the next start.
func checkUnprivileged(ctx context.Context, t *testing.T, c *nspawn.Container, ex func(...string) string, journal func(string) string) {
	t.Helper()
	sh := func(script string) string { return strings.TrimSpace(ex("sh", "-c", script)) }
	// The whole journal of a unit since boot.
	logged := func(unit string) string {
		out, _ := c.Exec(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", unit)
		return out
	}
	for _, d := range daemons.All {
		l := d.Hardening.Limits
		props := showProps(t, c, d.Unit, "User", "Group", "MemoryMax", "TasksMax", "LimitNOFILE", "MainPID")
		want := map[string]string{
			"User": d.Hardening.User, "Group": d.Hardening.User,
			"MemoryMax":   strconv.Itoa(l.MemoryMaxMiB << 20),
			"TasksMax":    strconv.Itoa(l.TasksMax),
			"LimitNOFILE": strconv.Itoa(l.NOFILE),
		}
		for k, v := range want {
			if props[k] != v {
				t.Errorf("%s: %s=%q, want %q", d.Unit, k, props[k], v)
			}
		}
		// vprocd alone runs as root (Hardening.User ""): it starts
		// programs as their callers.
		owner := d.Hardening.User
		if owner == "" {
			owner = "root"
		}
		if got := sh("stat -c %U /proc/" + props["MainPID"]); got != owner {
			t.Errorf("%s: main process runs as %q, want %q", d.Unit, got, owner)
		}
		if got := sh("stat -c '%U:%G %a' /run/openssi/" + d.Name + ".sock"); got != owner+":openssi 660" {
			t.Errorf("%s: socket %s, want %s:openssi 660", d.Unit, got, owner)
		}
		t.Logf("%s: user %s, %s", d.Unit, props["User"], sh("grep -E '^(VmRSS|Threads)' /proc/"+props["MainPID"]+"/status | tr -s '\\t\\n' '  '"))
	}
	if got := sh("stat -c '%U:%G %a' /run/openssi /var/lib/openssi /var/lib/openssi/node"); got != "openssi:openssi 755\nopenssi:openssi 700\nopenssi:openssi 644" {
		t.Errorf("run, state dir and node file: %q", got)
	}
	// No token file yet: the blank default credential, the settings apply.
	for _, d := range daemons.All {
		if j := logged(d.Unit); !strings.Contains(j, "the credential consul.token is empty") {
			t.Errorf("%s does not say its credential is empty:\n%s", d.Unit, j)
		}
	}
	// A member of the socket group uses ssi; another user is refused at the socket.
	sh("useradd --create-home --groups openssi alice && useradd --create-home bob")
	if out, err := c.Exec(ctx, "runuser", "-u", "alice", "--", "ssi", "nodes"); err != nil || !strings.Contains(out, "UP") {
		t.Errorf("ssi nodes as a member of group openssi: %v\n%s", err, out)
	}
	if out, err := c.Exec(ctx, "runuser", "-u", "bob", "--", "ssi", "nodes"); err == nil {
		t.Errorf("ssi nodes as a user outside group openssi succeeded:\n%s", out)
	}
	// ssi exec runs a program as its caller, never as vprocd's root, in
	// a scope of its own in the caller's slice (/proc/self/cgroup may
	// name it on more than one line).
	uid := sh("id -u alice")
	out, err := c.Exec(ctx, "runuser", "-u", "alice", "--", "ssi", "exec", "-C", "/", "--", "sh", "-c", "id -un; id -u; grep -o 'user-[0-9]*.slice/openssi-vproc-[0-9-]*.scope' /proc/self/cgroup")
	if lines := strings.Fields(out); err != nil || len(lines) < 3 || lines[0] != "alice" || lines[1] != uid || !strings.HasPrefix(lines[2], "user-"+uid+".slice/openssi-vproc-") {
		t.Errorf("ssi exec as alice: %v\n%s\n%s", err, out, logged("openssi-vprocd.service"))
	}
	// Her next program runs in a gate vprocd started ahead for her
	// (vprocd.warm_gates), already in a scope of its own in her slice.
	var gate string
	for deadline := time.Now().Add(10 * time.Second); gate == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := c.Exec(ctx, "pgrep", "-u", "alice", "-f", "^openssi-vproc-gate$")
		gate, _, _ = strings.Cut(strings.TrimSpace(out), "\n")
	}
	out, err = c.Exec(ctx, "runuser", "-u", "alice", "--", "ssi", "exec", "-C", "/", "--", "sh", "-c", "echo $$; id -u; grep -o 'user-[0-9]*.slice/openssi-vproc-[0-9-]*.scope' /proc/self/cgroup")
	if lines := strings.Fields(out); gate == "" || err != nil || len(lines) < 3 || lines[0] != gate || lines[1] != uid || !strings.HasPrefix(lines[2], "user-"+uid+".slice/openssi-vproc-") {
		t.Errorf("ssi exec as alice again, in her gate %q started ahead: %v\n%s\n%s", gate, err, out, logged("openssi-vprocd.service"))
	}
	if out, err := c.Exec(ctx, "runuser", "-u", "bob", "--", "ssi", "exec", "--", "true"); err == nil || !strings.Contains(out, "vprocd") {
		t.Errorf("ssi exec as a user outside group openssi: %v\n%s", err, out)
	}

	// The token: root's file, the daemons' credential.
	const token = "00000000-0000-4000-8000-000000000011"
	sh("umask 077 && printf '%s\\n' " + token + " > /etc/openssi/consul.token")
	units := []string{}
	for _, d := range daemons.All {
		units = append(units, d.Unit)
	}
	ex(append([]string{"systemctl", "restart"}, units...)...)
	for _, d := range daemons.All {
		if st := show(t, c, d.Unit); st["ActiveState"] != "active" {
			t.Errorf("%s with a token file: %v\n%s", d.Unit, st, journal(d.Unit))
		}
		cred := "/run/credentials/" + d.Unit + "/consul.token"
		if got := sh("cat " + cred); got != token {
			t.Errorf("%s: credential %q, want the token file's", d.Unit, got)
		}
		owner := d.Hardening.User
		if owner == "" {
			owner = "root"
		}
		if got := sh("stat -c '%U %a' " + cred); got != owner+" 400" {
			t.Errorf("%s: credential %s, want %s 400", d.Unit, got, owner)
		}
		if got := sh("tr '\\0' '\\n' < /proc/" + showProps(t, c, d.Unit, "MainPID")["MainPID"] + "/environ | grep ^CREDENTIALS_DIRECTORY="); got != "CREDENTIALS_DIRECTORY=/run/credentials/"+d.Unit {
			t.Errorf("%s: main process has %q", d.Unit, got)
		}
		if j := logged(d.Unit); !strings.Contains(j, "Consul ACL token from the systemd credential consul.token") || strings.Contains(j, token) {
			t.Errorf("%s does not log (only) where its token came from:\n%s", d.Unit, j)
		}
	}
	if got := sh("stat -c '%U:%G %a' /etc/openssi/consul.token"); got != "root:root 600" {
		t.Errorf("token file is %s, want root:root 600", got)
	}
	if out, err := c.Exec(ctx, "runuser", "-u", "alice", "--", "cat", "/etc/openssi/consul.token"); err == nil {
		t.Errorf("a user read the token file: %s", out)
	}
	sh("rm /etc/openssi/consul.token")

	// State a root-run version left: taken over on the next start.
	// A stop of the target returns before its daemons have stopped (it
	// orders after none of them): wait, or the start below would cancel
	// a stop job still waiting for the daemons ordered after it.
	ex("systemctl", "stop", packaging.Target)
	for _, d := range daemons.All {
		if !eventually(ctx, 30*time.Second, func() bool {
			st := show(t, c, d.Unit)["ActiveState"]
			return st == "inactive" || st == "failed"
		}) {
			t.Fatalf("%s did not stop with %s: %v", d.Unit, packaging.Target, show(t, c, d.Unit))
		}
	}
	sh("chown -R root:root /var/lib/openssi /run/openssi && chmod 0750 /var/lib/openssi")
	ex("systemctl", "start", packaging.Target)
	for _, d := range daemons.All {
		if !eventually(ctx, 30*time.Second, func() bool { return show(t, c, d.Unit)["ActiveState"] == "active" }) {
			t.Errorf("%s over root's state: %v\n%s", d.Unit, show(t, c, d.Unit), journal(d.Unit))
		}
	}
	if got := sh("stat -c '%U:%G %a' /run/openssi /var/lib/openssi /var/lib/openssi/node"); got != "openssi:openssi 755\nopenssi:openssi 700\nopenssi:openssi 644" {
		t.Errorf("after a start over root's state: %q", got)
	}
}

// showProps returns the named properties of a unit.
func showProps(t *testing.T, c *nspawn.Container, unit string, props ...string) map[string]string {
	t.Helper()
	out, _ := c.Exec(context.Background(), "systemctl", "show", "-p", strings.Join(props, ","), unit)
	st := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			st[k] = v
		}
	}
	return st
}

// show returns a unit's state properties.
func show(t *testing.T, c *nspawn.Container, unit string) map[string]string {
	t.Helper()
	out, _ := c.Exec(context.Background(), "systemctl", "show", "-p", "ActiveState,SubState,MainPID,NRestarts,Result", unit)
	st := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			st[k] = v
		}
	}
	return st
}

// eventually polls cond until it holds or d passes.
func eventually(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
