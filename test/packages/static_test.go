//go:build packages

package packages

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/packaging"
)

// extract unpacks a .deb's data into a new directory.
func extract(t *testing.T, deb string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "", "dpkg-deb", "-x", deb, dir)
	return dir
}

func TestContents(t *testing.T) {
	need(t, "dpkg-deb")
	b := packages(t)
	root := extract(t, b.v1.Deb)
	want := []string{
		packaging.SsiPath, packaging.ConfigPath,
		"/lib/systemd/system/openssi.target",
		"/usr/lib/sysusers.d/openssi.conf", "/usr/lib/tmpfiles.d/openssi.conf",
		"/usr/share/man/man1/ssi.1.gz", "/usr/share/man/man5/openssi.yaml.5.gz",
		"/usr/share/bash-completion/completions/ssi",
		"/usr/share/doc/openssi/copyright", "/usr/share/doc/openssi/changelog.gz",
	}
	for _, d := range daemons.All {
		want = append(want, "/usr/sbin/"+d.Binary, "/lib/systemd/system/"+d.Unit, "/usr/share/man/man8/"+d.Binary+".8.gz")
	}
	for _, w := range want {
		if _, err := os.Stat(filepath.Join(root, w)); err != nil {
			t.Errorf("the .deb lacks %s", w)
		}
	}
	// Every program static and stripped.
	progs, _ := filepath.Glob(filepath.Join(root, "usr/*bin/*"))
	for _, p := range progs {
		f, err := elf.Open(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		for _, ph := range f.Progs {
			if ph.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked", strings.TrimPrefix(p, root))
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s is not stripped", strings.TrimPrefix(p, root))
		}
		f.Close()
	}
	// sysusers and tmpfiles entries.
	for file, line := range map[string]string{
		"usr/lib/sysusers.d/openssi.conf": packaging.SysusersConf(),
		"usr/lib/tmpfiles.d/openssi.conf": packaging.TmpfilesConf(),
	} {
		data, _ := os.ReadFile(filepath.Join(root, file))
		if string(data) != line {
			t.Errorf("%s is %q, want %q", file, data, line)
		}
	}
	// Every man page a unit's Documentation= names is in the package.
	units, _ := filepath.Glob(filepath.Join(root, "lib/systemd/system/*"))
	for _, u := range units {
		text, _ := os.ReadFile(u)
		for _, m := range regexp.MustCompile(`man:([^ (]+)\((\d)\)`).FindAllStringSubmatch(string(text), -1) {
			page := filepath.Join(root, "usr/share/man/man"+m[2], m[1]+"."+m[2]+".gz")
			if _, err := os.Stat(page); err != nil {
				t.Errorf("%s names man:%s(%s), which the package lacks", filepath.Base(u), m[1], m[2])
			}
		}
	}
}

// TestNoNameCollision: no installed program may be named like a Debian
// package (Debian's keepalived owns /usr/sbin/keepalived, so ours is
// openssi-keepalived), and a daemon named like one must install under
// another name.
func TestNoNameCollision(t *testing.T) {
	need(t, "apt-cache")
	if out, _ := exec.Command("apt-cache", "show", "keepalived").Output(); len(out) == 0 {
		t.Fatal("apt-cache knows no keepalived: the package lists are missing (run apt-get update)")
	}
	names := []string{"ssi"}
	for _, d := range daemons.All {
		names = append(names, d.Binary)
		if debianPackage(d.Name) && d.Binary == d.Name {
			t.Errorf("daemon %s: Debian has a package %s; its Binary must differ (openssi-%s)", d.Name, d.Name, d.Name)
		}
		if !strings.HasPrefix(d.Unit, "openssi-") {
			t.Errorf("daemon %s: unit %s is not openssi-<daemon>.service", d.Name, d.Unit)
		}
	}
	for _, n := range names {
		if debianPackage(n) {
			t.Errorf("installed program %s is named like a Debian package", n)
		}
	}
}

func debianPackage(name string) bool {
	out, _ := exec.Command("apt-cache", "show", "--no-all-versions", name).Output()
	return len(bytes.TrimSpace(out)) > 0
}

func TestShippedConfig(t *testing.T) {
	need(t, "dpkg-deb", "rpm")
	b := packages(t)
	root := extract(t, b.v1.Deb)
	shipped, err := os.ReadFile(filepath.Join(root, packaging.ConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shipped, packaging.ShippedConfig()) {
		t.Errorf("shipped %s differs from packaging.ShippedConfig()", packaging.ConfigPath)
	}
	if _, err := config.Load(config.LoadOptions{Path: filepath.Join(root, packaging.ConfigPath), Sections: daemons.Sections()}); err != nil {
		t.Errorf("shipped configuration does not load: %v", err)
	}
	if cf := run(t, "", "dpkg-deb", "-I", b.v1.Deb, "conffiles"); strings.TrimSpace(cf) != packaging.ConfigPath {
		t.Errorf("deb conffiles = %q, want %s", cf, packaging.ConfigPath)
	}
	flags := run(t, "", "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", b.v1.RPM)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(packaging.ConfigPath) + ` cn$`).MatchString(flags) {
		t.Errorf("rpm does not mark %s %%config(noreplace):\n%s", packaging.ConfigPath, flags)
	}
}

func TestReproducible(t *testing.T) {
	b := packages(t)
	again, err := packaging.Build(packaging.BuildOptions{RepoDir: repoRoot(t), OutDir: t.TempDir(), Version: b.v1.Version})
	if err != nil {
		t.Fatal(err)
	}
	if sha(t, again.Deb) != sha(t, b.v1.Deb) {
		t.Error("two builds of the same tree give different .debs")
	}
	if sha(t, again.RPM) != sha(t, b.v1.RPM) {
		t.Error("two builds of the same tree give different .rpms")
	}
}

// commentedEntries fails t for every entry of a config file that is not
// directly below a comment line (or another entry of the same block).
func commentedEntries(t *testing.T, file string, entry func(line string) bool) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	prevComment := false
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "#"):
			prevComment = true
		case l == "":
			prevComment = false
		case entry(l):
			if !prevComment {
				t.Errorf("%s:%d: %q has no comment saying why", filepath.Base(file), i+1, l)
			}
		}
	}
}

func TestLintian(t *testing.T) {
	need(t, "lintian")
	b := packages(t)
	cmd := exec.Command("lintian", "--fail-on", "error", "--tag-display-limit", "0", "--display-info", b.v1.Deb)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("lintian reports errors:\n%s", out)
	}
	t.Logf("lintian:\n%s", out)
	commentedEntries(t, filepath.Join(repoRoot(t), "debian/openssi.lintian-overrides"), func(string) bool { return true })
}

func TestRpmlint(t *testing.T) {
	need(t, "rpmlint", "rpmspec")
	b := packages(t)
	root := repoRoot(t)
	conf := filepath.Join(root, "rpm/rpmlint.toml")
	for _, target := range []string{b.v1.RPM, filepath.Join(root, "rpm/openssi.spec")} {
		out, _ := exec.Command("rpmlint", "-c", conf, target).CombinedOutput()
		if !regexp.MustCompile(`\b0 errors\b`).Match(out) {
			t.Errorf("rpmlint %s reports errors:\n%s", filepath.Base(target), out)
		}
		t.Logf("rpmlint %s:\n%s", filepath.Base(target), out)
	}
	// Every filter justified.
	inFilters := false
	commentedEntries(t, conf, func(l string) bool {
		if strings.HasPrefix(l, "Filters") {
			inFilters = true
			return false
		}
		if l == "]" {
			inFilters = false
		}
		return inFilters && strings.HasPrefix(l, `"`)
	})
}

func TestSpec(t *testing.T) {
	need(t, "rpmspec")
	root := repoRoot(t)
	out := run(t, root, "rpmspec", "-P", "rpm/openssi.spec")
	if !strings.Contains(out, "%config(noreplace) /etc/openssi/openssi.yaml") {
		t.Error("rpmspec -P: the configuration is not marked config(noreplace)")
	}
	units := []string{packaging.Target}
	for _, d := range daemons.All {
		units = append(units, d.Unit)
	}
	spec, _ := os.ReadFile(filepath.Join(root, "rpm/openssi.spec"))
	want := "%global units " + strings.Join(units, " ") + "\n"
	if !strings.Contains(string(spec), want) {
		t.Errorf("rpm/openssi.spec: the units line must be %q (internal/daemons.All)", strings.TrimSpace(want))
	}
	// The changelog versions of debian/ and rpm/ agree.
	dv := strings.TrimSpace(run(t, root, "dpkg-parsechangelog", "-S", "Version"))
	if !strings.Contains(string(spec), "Version:        "+dv+"\n") {
		t.Errorf("rpm/openssi.spec Version differs from debian/changelog's %s", dv)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

// TestSecurityExposure: no unit may score worse than the figure recorded
// in packaging/hardening.go (and packaging/README.md), neither the units
// shipped now nor those of the planned daemons.
func TestSecurityExposure(t *testing.T) {
	need(t, "systemd-analyze", "go")
	dir := t.TempDir()
	run(t, repoRoot(t), "go", "run", "./packaging/cmd/openssi-pkg", "units", "--all", "--out", dir)
	units, _ := filepath.Glob(filepath.Join(dir, "*.service"))
	if len(units) < len(packaging.Profiles) {
		t.Fatalf("only %d units for %d profiles", len(units), len(packaging.Profiles))
	}
	sort.Strings(units)
	readme, _ := os.ReadFile(filepath.Join(repoRoot(t), "packaging/README.md"))
	for _, u := range units {
		out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", u).CombinedOutput()
		m := exposureRE.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: no exposure in:\n%s", filepath.Base(u), out)
			continue
		}
		got, _ := strconv.ParseFloat(string(m[2]), 64)
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(u), "openssi-"), ".service")
		p := packaging.Profiles[name]
		if got > p.Exposure+1e-9 {
			t.Errorf("%s: exposure %.1f is worse than the recorded %.1f", filepath.Base(u), got, p.Exposure)
		}
		if !strings.Contains(string(readme), "| "+name+" |") || !strings.Contains(string(readme), strconv.FormatFloat(p.Exposure, 'f', 1, 64)) {
			t.Errorf("packaging/README.md lacks the row of %s with exposure %.1f", name, p.Exposure)
		}
		t.Logf("%s: exposure %.1f (recorded %.1f)", filepath.Base(u), got, p.Exposure)
	}
	for _, d := range daemons.All {
		if _, ok := packaging.Profiles[d.Name]; !ok {
			t.Errorf("daemon %s has no hardening profile in packaging/hardening.go", d.Name)
		}
	}
}

// TestDebianSourcePackage builds debian/ with dpkg-buildpackage, offline,
// and compares its file list with the nfpm .deb's.
func TestDebianSourcePackage(t *testing.T) {
	need(t, "dpkg-buildpackage", "dh", "fakeroot", "git")
	b := packages(t)
	root := repoRoot(t)
	src := filepath.Join(t.TempDir(), "openssi")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// The work tree as git sees it (tracked and new files, not ignored).
	run(t, root, "sh", "-c", `git ls-files -z -co --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf - | tar -C "$1" -xf -`, "sh", src)
	cmd := exec.Command("dpkg-buildpackage", "-us", "-uc", "-b")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-buildpackage -us -uc -b (offline): %v\n%s", err, tail(out, 60))
	}
	debs, _ := filepath.Glob(filepath.Join(filepath.Dir(src), "openssi_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("dpkg-buildpackage made %v, want one openssi_*_amd64.deb", debs)
	}
	native, nfpm := debPaths(t, debs[0]), debPaths(t, b.v1.Deb)
	if d := diff(native, nfpm); d != "" {
		t.Errorf("debian/ and nfpm .debs hold different files (- debian/, + nfpm):\n%s", d)
	}
	if cf := run(t, "", "dpkg-deb", "-I", debs[0], "conffiles"); strings.TrimSpace(cf) != packaging.ConfigPath {
		t.Errorf("debian/ conffiles = %q", cf)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		a := run(t, "", "dpkg-deb", "-I", debs[0], s)
		c := run(t, "", "dpkg-deb", "-I", b.v1.Deb, s)
		if a != c {
			t.Errorf("%s differs between the debian/ and the nfpm .deb", s)
		}
	}
}

func diff(a, b []string) string {
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[strings.TrimSuffix(x, "/")] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for x := range ma {
		if !mb[x] {
			out = append(out, "- "+x)
		}
	}
	for x := range mb {
		if !ma[x] {
			out = append(out, "+ "+x)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
