//go:build packages

package packages

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/nspawn"
	"github.com/openssi/openssi/internal/rootfs"
	"github.com/openssi/openssi/packaging"
)

// repoInContainer is where the local repository appears in a container.
const repoInContainer = "/srv/openssi-repo"

func rootfsCache() string {
	if d := os.Getenv("OPENSSI_ROOTFS_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "openssi", "rootfs")
}

// image returns a throwaway copy of the cached bookworm rootfs.
func image(t *testing.T) string {
	t.Helper()
	need(t, "debootstrap", "systemd-nspawn", "nsenter")
	start := time.Now()
	src, err := rootfs.Ensure(rootfsCache(), nil)
	if err != nil {
		t.Fatalf("bookworm rootfs: %v", err)
	}
	t.Logf("rootfs ready in %v", time.Since(start).Round(time.Millisecond))
	dst := filepath.Join(t.TempDir(), "root")
	if err := rootfs.Clone(src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// publish (re)builds the signed local repository at dir with debs and
// rpms, and installs its key and apt source into the rootfs at root.
func publish(t *testing.T, dir, root string, b ...packaging.Built) {
	t.Helper()
	need(t, "gpg", "apt-ftparchive", "createrepo_c")
	var debs, rpms []string
	for _, x := range b {
		debs = append(debs, x.Deb)
		rpms = append(rpms, x.RPM)
	}
	if err := packaging.Repo(packaging.RepoOptions{Dir: dir, Debs: debs, RPMs: rpms, URL: "file://" + repoInContainer}); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{
		packaging.KeyringName: "usr/share/keyrings/" + packaging.KeyringName,
		"openssi.list":        "etc/apt/sources.list.d/openssi.list",
	} {
		data, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The snippet names the signed-by key: apt must verify InRelease with it.
	list, _ := os.ReadFile(filepath.Join(dir, "openssi.list"))
	if !strings.Contains(string(list), "signed-by=/usr/share/keyrings/"+packaging.KeyringName) {
		t.Fatalf("openssi.list does not pin the key: %s", list)
	}
	for _, f := range []string{"apt/dists/stable/InRelease", "apt/dists/stable/Release.gpg", "yum/repodata/repomd.xml", "yum/repodata/repomd.xml.asc", "openssi.repo", packaging.KeyASCName} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("repository lacks %s", f)
		}
	}
}

// snapshot lists the files of a rootfs, leaving out what apt and dpkg
// keep for themselves and what changes on its own.
func snapshot(t *testing.T, root string) map[string]bool {
	t.Helper()
	skip := []string{"proc", "sys", "dev", "run", "tmp", "var/tmp", "var/log", "var/cache", "var/lib/apt", "var/lib/dpkg", "srv", "etc/ld.so.cache"}
	files := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		files[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestInstallUpgradePurge installs openssi with apt from the signed local
// repository into a bookworm system where systemd is not running (as in
// an image build), upgrades it over a locally edited conffile and purges
// it.
func TestInstallUpgradePurge(t *testing.T) {
	b := packages(t)
	root := image(t)
	repo := filepath.Join(t.TempDir(), "repo")
	publish(t, repo, root, b.v1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := nspawn.Options{Dir: root, Name: "openssi-install-test", PrivateNetwork: true,
		Binds: []nspawn.Bind{{Host: repo, Container: repoInContainer, ReadOnly: true}}}
	sh := func(script string) string {
		t.Helper()
		out, err := nspawn.Run(ctx, opts, "/bin/sh", "-c", script)
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		return string(out)
	}
	start := time.Now()
	sh("apt-get update -q -o Acquire::Languages=none")
	before := snapshot(t, root)

	// Install.
	out := sh("apt-get install -y -q openssi")
	t.Logf("install (%v):\n%s", time.Since(start).Round(time.Millisecond), tail([]byte(out), 15))
	for _, f := range []string{packaging.SsiPath, packaging.ConfigPath, "lib/systemd/system/openssi.target", "var/lib/openssi"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("after install: %s missing", f)
		}
	}
	if got := sh("dpkg-query -W -f '${Version}' openssi"); got != b.v1.Version {
		t.Errorf("installed version %q, want %q", got, b.v1.Version)
	}
	if !strings.Contains(sh("getent group openssi || echo none"), "openssi:") {
		t.Error("group openssi not created")
	}
	// The daemons' system user: no login shell, no home of its own, the
	// socket group its primary group.
	if u, g := strings.Split(strings.TrimSpace(sh("getent passwd openssi || true")), ":"), strings.Split(sh("getent group openssi"), ":"); len(u) != 7 || len(g) < 3 || u[3] != g[2] || u[5] != "/" || u[6] != "/usr/sbin/nologin" {
		t.Errorf("user openssi = %q (group %q), want a system user of group openssi, home /, shell /usr/sbin/nologin", u, g)
	}
	if got := strings.TrimSpace(sh("stat -c '%U:%G %a' /var/lib/openssi")); got != "openssi:openssi 700" {
		t.Errorf("/var/lib/openssi is %s, want openssi:openssi 700", got)
	}
	if got := sh("dpkg-query -W -f '${Conffiles}' openssi"); !strings.Contains(got, packaging.ConfigPath) {
		t.Errorf("conffiles = %q, want %s", got, packaging.ConfigPath)
	}
	units := []string{packaging.Target}
	wants := []string{"etc/systemd/system/multi-user.target.wants/openssi.target"}
	for _, d := range daemons.All {
		units = append(units, d.Unit)
		wants = append(wants, "etc/systemd/system/openssi.target.wants/"+d.Unit)
		if _, err := os.Stat(filepath.Join(root, packaging.SbinDir, d.Binary)); err != nil {
			t.Errorf("after install: %s/%s missing", packaging.SbinDir, d.Binary)
		}
	}
	for _, w := range wants {
		if _, err := os.Lstat(filepath.Join(root, w)); err != nil {
			t.Errorf("not enabled: %s missing", w)
		}
	}
	got := strings.Fields(sh("systemctl is-enabled " + strings.Join(units, " ") + " || true"))
	enabled := len(got) == len(units)
	for _, g := range got {
		enabled = enabled && g == "enabled"
	}
	if !enabled {
		t.Errorf("systemctl is-enabled %v = %v, want all enabled", units, got)
	}

	// systemd-analyze verify of every unit, in the installed system: no
	// output at all (unknown keys only warn, on stderr).
	var paths []string
	for _, u := range units {
		paths = append(paths, "/lib/systemd/system/"+u)
	}
	if got := sh("systemd-analyze verify --man=no " + strings.Join(paths, " ") + " 2>&1; echo rc=$?"); strings.TrimSpace(got) != "rc=0" {
		t.Errorf("systemd-analyze verify:\n%s", got)
	}

	// An invalid configuration: the postinst says so in one line and
	// starts nothing.
	cfg := filepath.Join(root, packaging.ConfigPath)
	orig, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte("cluster:\n  nmae: typo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	msg := sh("DPKG_MAINTSCRIPT_PACKAGE=openssi DPKG_MAINTSCRIPT_NAME=postinst /var/lib/dpkg/info/openssi.postinst configure " + b.v1.Version + " 2>&1")
	if lines := strings.Split(strings.TrimSpace(msg), "\n"); len(lines) != 1 || !strings.Contains(msg, "is not valid") || !strings.Contains(msg, "nmae") {
		t.Errorf("postinst with an invalid configuration said %q, want one line naming the problem", msg)
	}

	// Upgrade over a locally edited conffile: kept, the new one beside it.
	edited := strings.Replace(string(orig), "log_level: info", "log_level: debug", 1)
	if edited == string(orig) {
		t.Fatal("cannot edit the shipped configuration (no log_level: info)")
	}
	if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	publish(t, repo, root, b.v1, b.v2)
	start = time.Now()
	sh("apt-get update -q -o Acquire::Languages=none")
	out = sh("apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold openssi")
	t.Logf("upgrade (%v):\n%s", time.Since(start).Round(time.Millisecond), tail([]byte(out), 10))
	if got := sh("dpkg-query -W -f '${Version}' openssi"); got != b.v2.Version {
		t.Errorf("after upgrade: version %q, want %q", got, b.v2.Version)
	}
	if now, _ := os.ReadFile(cfg); string(now) != edited {
		t.Error("upgrade replaced the locally edited configuration")
	}
	if dist, err := os.ReadFile(cfg + ".dpkg-dist"); err != nil || !strings.Contains(string(dist), upgradeMark) {
		t.Errorf("upgrade left no %s.dpkg-dist with the new configuration (%v)", packaging.ConfigPath, err)
	}

	// Purge: nothing left behind but what an administrator put in
	// /etc/openssi (the node's Consul token).
	sh("umask 077 && echo token > /etc/openssi/consul.token")
	out = sh("apt-get purge -y -q openssi")
	t.Logf("purge:\n%s", tail([]byte(out), 8))
	if g := sh("getent group openssi || true"); g != "" {
		t.Errorf("group left after purge: %s", g)
	}
	if u := sh("getent passwd openssi || true"); u != "" {
		t.Errorf("user left after purge: %s", u)
	}
	if got := sh("cat /etc/openssi/consul.token || true"); strings.TrimSpace(got) != "token" {
		t.Errorf("purge removed the administrator's token file (%q)", got)
	}
	sh("rm /etc/openssi/consul.token && rmdir /etc/openssi")
	after := snapshot(t, root)
	var left []string
	for f := range after {
		if !before[f] {
			left = append(left, f)
		}
	}
	sort.Strings(left)
	if len(left) > 0 {
		t.Errorf("purge left behind: %s", strings.Join(left, ", "))
	}
	if st := sh("dpkg-query -W -f '${db:Status-Abbrev}' openssi 2>/dev/null || true"); strings.TrimSpace(st) != "" && !strings.HasPrefix(st, "un") && !strings.HasPrefix(st, "pn") {
		t.Errorf("dpkg still knows openssi after purge: %q", st)
	}
	if out, err := exec.Command("sh", "-c", "ls "+filepath.Join(root, "var/lib/systemd/deb-systemd-helper-enabled")+" -R | grep -i openssi").Output(); err == nil && len(out) > 0 {
		t.Errorf("deb-systemd-helper state left: %s", out)
	}
}
