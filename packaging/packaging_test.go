package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/daemons"
)

func TestVersionFromDescribe(t *testing.T) {
	for _, tc := range []struct {
		describe string
		count    int
		sha      string
		dirty    bool
		want     string
	}{
		{"", 17, "abc1234", false, "0.0.0~git17.abc1234"},
		{"", 17, "abc1234", true, "0.0.0~git17.abc1234+dirty"},
		{"v1.2.0-0-gabc1234", 40, "abc1234", false, "1.2.0"},
		{"v1.2.0-3-gabc1234", 43, "abc1234", false, "1.2.0+git3.abc1234"},
		{"v1.2.0-3-gabc1234", 43, "abc1234", true, "1.2.0+git3.abc1234.dirty"},
		{"v2.0.0rc1-0-gdef5678", 9, "def5678", false, "2.0.0rc1"},
	} {
		got, err := VersionFromDescribe(tc.describe, tc.count, tc.sha, tc.dirty)
		if err != nil || got != tc.want {
			t.Errorf("VersionFromDescribe(%q, %d, %q, %v) = %q, %v; want %q", tc.describe, tc.count, tc.sha, tc.dirty, got, err, tc.want)
		}
	}
	for _, bad := range []string{"1.2.0", "v1.2.0-x-gabc", "release-1"} {
		if v, err := VersionFromDescribe(bad, 1, "abc1234", false); err == nil {
			t.Errorf("VersionFromDescribe(%q) = %q, want an error", bad, v)
		}
	}
	if _, err := VersionFromDescribe("", 0, "", false); err == nil {
		t.Error("no tag and no commit gave a version")
	}
}

// TestVersionOrder: dpkg orders the versions as intended (an untagged
// build before the release, a dirty tree after its commit).
func TestVersionOrder(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg not found: apt-get install dpkg")
	}
	for _, pair := range [][2]string{
		{"0.0.0~git17.abc1234", "0.0.0"},
		{"0.0.0~git17.abc1234", "0.0.0~git18.0000000"},
		{"0.0.0~git17.abc1234", "0.0.0~git17.abc1234+dirty"},
		{"1.2.0", "1.2.0+git3.abc1234"},
		{"1.2.0+git3.abc1234", "1.2.1"},
	} {
		if err := exec.Command("dpkg", "--compare-versions", pair[0], "lt", pair[1]).Run(); err != nil {
			t.Errorf("dpkg: %s is not older than %s", pair[0], pair[1])
		}
	}
}

func FuzzVersionFromDescribe(f *testing.F) {
	for _, s := range []string{"", "v1.2.0-0-gabc1234", "v1.2.0-3-gabc1234", "garbage"} {
		f.Add(s, 3, "abc1234", false)
	}
	f.Fuzz(func(t *testing.T, describe string, count int, sha string, dirty bool) {
		v, err := VersionFromDescribe(describe, count, sha, dirty)
		if err != nil {
			return
		}
		for _, r := range v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".+~", r)) {
				t.Fatalf("version %q from %q has %q, invalid in Debian or RPM versions", v, describe, r)
			}
		}
	})
}

func TestEveryDaemonHasAProfile(t *testing.T) {
	if err := daemons.Check(daemons.All); err != nil {
		t.Error(err)
	}
	for _, d := range daemons.All {
		if _, planned := Planned[d.Name]; planned {
			t.Errorf("daemon %s has a folder: move its profile from Planned into its description", d.Name)
		}
	}
	for _, planned := range []string{"clmsd", "dlmd", "vprocd", "ipcd", "cfsd", "lvsd", "keepalived", "initfailover"} {
		if _, ok := Profiles[planned]; !ok {
			t.Errorf("planned daemon %s has no hardening profile", planned)
		}
	}
}

func TestServiceUnit(t *testing.T) {
	for _, d := range daemons.All {
		u := ServiceUnit(d)
		for _, want := range []string{
			"Type=notify\n", "WatchdogSec=30s\n", "Restart=on-failure\n", "RestartPreventExitStatus=2\n",
			"PartOf=openssi.target\n", "WantedBy=openssi.target\n", "Wants=network-online.target consul.service\n",
			"StartLimitBurst=", "ExecStart=/usr/sbin/" + d.Binary + "\n", "NoNewPrivileges=" + noNewPrivileges(d.Hardening) + "\n",
			"Environment=GOTRACEBACK=crash\n", "CapabilityBoundingSet=", "RestrictAddressFamilies=",
			"Description=OpenSSI " + d.Name + " (" + d.Summary + ")\n", "# Sandbox (see packaging/README.md): " + d.Hardening.Why + "\n",
		} {
			if !strings.Contains(u, want) {
				t.Errorf("%s lacks %q", d.Unit, want)
			}
		}
		// Ordered after, and wanting, exactly the daemons it needs.
		after := "After=network-online.target consul.service"
		var wants []string
		for _, line := range strings.Split(u, "\n") {
			if w, ok := strings.CutPrefix(line, "Wants="); ok {
				wants = append(wants, strings.Fields(w)...)
			}
		}
		for _, n := range d.Needs {
			after += " " + UnitOf(n)
			if !slices.Contains(wants, UnitOf(n)) {
				t.Errorf("%s does not want %s, which it needs", d.Unit, UnitOf(n))
			}
		}
		if !strings.Contains(u, after+"\n") {
			t.Errorf("%s is not ordered by %q:\n%s", d.Unit, after, u)
		}
		for _, o := range daemons.All {
			if o.Name != d.Name && !slices.Contains(d.Needs, o.Name) && strings.Contains(u, o.Unit) {
				t.Errorf("%s names %s, which it does not need", d.Unit, o.Unit)
			}
		}
	}
	dlmd, _ := daemons.Find("dlmd")
	if u := ServiceUnit(dlmd); !strings.Contains(u, "After=network-online.target consul.service openssi-clmsd.service\n") {
		t.Errorf("dlmd is not ordered after clmsd:\n%s", u)
	}
	clmsd := ServiceUnit(daemons.Daemon{Name: "clmsd", Binary: "clmsd", Unit: "openssi-clmsd.service", Hardening: Profiles["clmsd"]})
	for _, want := range []string{"CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n", "ProtectSystem=strict\n", "ReadWritePaths=/run/openssi /var/lib/openssi\n"} {
		if !strings.Contains(clmsd, want) {
			t.Errorf("clmsd unit lacks %q", want)
		}
	}
	cfsd := ServiceUnit(daemons.Daemon{Name: "cfsd", Binary: "cfsd", Unit: "openssi-cfsd.service", Hardening: Profiles["cfsd"]})
	for _, want := range []string{"DeviceAllow=/dev/fuse rw\n", "SystemCallFilter=@mount open_by_handle_at setfsuid setgroups\n", "ProtectSystem=no\n"} {
		if !strings.Contains(cfsd, want) {
			t.Errorf("cfsd unit lacks %q", want)
		}
	}
	if strings.Contains(cfsd, "ReadWritePaths=") || strings.Contains(cfsd, "ProtectProc=") {
		t.Error("cfsd unit keeps a directive its profile removes")
	}
	// An empty SystemCallFilter drops the baseline's filters, and only
	// in the unit whose profile asks it.
	vprocd, _ := daemons.Find("vprocd")
	// Nor any other seccomp filter: criu, run by vprocd, cannot dump a
	// program under one.
	if u := ServiceUnit(vprocd); strings.Contains(u, "SystemCallFilter=") || strings.Contains(u, "SystemCallArchitectures=") || !strings.Contains(u, "RestrictAddressFamilies=\n") {
		t.Errorf("vprocd unit keeps a seccomp filter (system calls, architectures, address families):\n%s", u)
	}
	if !strings.Contains(clmsd, "SystemCallFilter=@system-service\n") {
		t.Error("clmsd unit lost the baseline's system call filter")
	}
}

// noNewPrivileges is the NoNewPrivileges= a profile gives its unit: the
// baseline's yes, unless it says otherwise (vprocd, whose programs must
// be able to use setuid programs).
func noNewPrivileges(p Profile) string {
	for _, d := range p.Set {
		if d.Key == "NoNewPrivileges" {
			return d.Value
		}
	}
	return "yes"
}

// TestUnitLimitsUserAndToken: clmsd and dlmd run as the system user with
// their directories from systemd, every registered daemon's unit carries
// MemoryMax, TasksMax and LimitNOFILE, and every unit loads the Consul
// token credential with an empty default. (Before: no limits, root, and
// no way to hand a root-only token to an unprivileged daemon.)
func TestUnitLimitsUserAndToken(t *testing.T) {
	for _, name := range []string{"clmsd", "dlmd"} {
		d, ok := daemons.Find(name)
		if !ok {
			t.Fatalf("%s is not registered", name)
		}
		u := ServiceUnit(d)
		for _, want := range []string{
			"\nUser=openssi\n", "\nGroup=openssi\n",
			"\nRuntimeDirectory=openssi\n", "\nRuntimeDirectoryMode=0755\n", "\nRuntimeDirectoryPreserve=yes\n",
			"\nStateDirectory=openssi\n", "\nStateDirectoryMode=0700\n",
			"\nLoadCredential=consul.token:/etc/openssi/consul.token\n", "\nSetCredential=consul.token:\\n\n",
		} {
			if !strings.Contains(u, want) {
				t.Errorf("%s lacks %q", d.Unit, strings.TrimSpace(want))
			}
		}
	}
	for _, d := range daemons.All {
		l := d.Hardening.Limits
		if l.MemoryMaxMiB <= 0 || l.TasksMax <= 0 || l.NOFILE <= 0 || l.Why == "" {
			t.Errorf("%s: limits %+v: set MemoryMaxMiB, TasksMax, NOFILE and say why", d.Name, l)
			continue
		}
		u := ServiceUnit(d)
		for _, want := range []string{
			fmt.Sprintf("\nMemoryMax=%dM\n", l.MemoryMaxMiB),
			fmt.Sprintf("\nEnvironment=GOMEMLIMIT=%dMiB\n", l.MemoryMaxMiB*3/4),
			fmt.Sprintf("\nTasksMax=%d\n", l.TasksMax),
			fmt.Sprintf("\nLimitNOFILE=%d\n", l.NOFILE),
		} {
			if !strings.Contains(u, want) {
				t.Errorf("%s lacks %q", d.Unit, strings.TrimSpace(want))
			}
		}
	}
	dlmd, _ := daemons.Find("dlmd")
	if l := dlmd.Hardening.Limits; l.MemoryMaxMiB < 256 {
		t.Errorf("dlmd MemoryMax %d MiB leaves no headroom over the 7-13 MiB the attacker test measured at one session's limit", l.MemoryMaxMiB)
	}
	// A daemon that must stay root (vprocd starts programs as other
	// users) gets no User= nor directories, and still the token; its
	// limits are a registered daemon's (above).
	vprocd := ServiceUnit(daemons.Daemon{Name: "vprocd", Binary: "vprocd", Unit: "openssi-vprocd.service", Hardening: Profiles["vprocd"]})
	for _, bad := range []string{"\nUser=", "\nStateDirectory="} {
		if strings.Contains(vprocd, bad) {
			t.Errorf("vprocd unit has %q", strings.TrimSpace(bad))
		}
	}
	if !strings.Contains(vprocd, "\nLoadCredential=consul.token:/etc/openssi/consul.token\n") {
		t.Error("vprocd unit does not load the Consul token")
	}
}

// TestSysusersAndTmpfiles: the package makes the user the units name and
// the directories as the units' RuntimeDirectory=/StateDirectory= make
// them, so boot-time tmpfiles and a service start never fight.
func TestSysusersAndTmpfiles(t *testing.T) {
	su := SysusersConf()
	for _, want := range []string{"\ng openssi -\n", "\nu openssi - \"OpenSSI cluster daemons\" - -\n"} {
		if !strings.Contains(su, want) {
			t.Errorf("sysusers.d lacks %q:\n%s", strings.TrimSpace(want), su)
		}
	}
	dirs := map[string]string{}
	for _, d := range IdentityDirectives("openssi") {
		dirs[d.Key] = d.Value
	}
	tf := TmpfilesConf()
	for _, want := range []string{
		"d /run/openssi " + dirs["RuntimeDirectoryMode"] + " openssi openssi -\n",
		"d /var/lib/openssi " + dirs["StateDirectoryMode"] + " openssi openssi -\n",
		"Z /var/lib/openssi - openssi openssi -\n",
	} {
		if !strings.Contains(tf, want) {
			t.Errorf("tmpfiles.d lacks %q:\n%s", strings.TrimSpace(want), tf)
		}
	}
	sc := MaintainerScripts(daemons.All)
	for _, want := range []string{"systemd-sysusers openssi.conf", "useradd --system --gid openssi", "--shell /usr/sbin/nologin", "userdel openssi"} {
		if !strings.Contains(sc.PostInst+sc.PostRm, want) {
			t.Errorf("maintainer scripts lack %q", want)
		}
	}
}

// TestHandKeptFiles checks the committed files derived from the daemons'
// descriptions: rpm/openssi.spec's %global units line names
// openssi.target and every daemon's unit, in registry order (make
// generate writes it); debian/
// names no daemon (its globs and packaging/ cover them all).
func TestHandKeptFiles(t *testing.T) {
	spec, err := os.ReadFile("../rpm/openssi.spec")
	if err != nil {
		t.Fatal(err)
	}
	if want := SpecUnitsLine() + "\n"; !strings.Contains(string(spec), want) {
		t.Errorf("rpm/openssi.spec: the units line must be %q (internal/daemons.All): run make generate", strings.TrimSpace(want))
	}
	for _, f := range []string{"rules", "control", "openssi.lintian-overrides"} {
		data, err := os.ReadFile(filepath.Join("../debian", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range daemons.All {
			if strings.Contains(string(data), d.Name) {
				t.Errorf("debian/%s names %s: cover every daemon with a glob or generate it in packaging/", f, d.Name)
			}
		}
	}
}

// TestRelations: debian/control and rpm/openssi.spec suggest and
// recommend what the nfpm packages do.
func TestRelations(t *testing.T) {
	control, err := os.ReadFile("../debian/control")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile("../rpm/openssi.spec")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		field string
		want  []string
	}{{"Suggests", Suggests}, {"Recommends", Recommends}} {
		if got := fieldLines(string(control), r.field+": "); !slices.Equal(got, []string{strings.Join(r.want, ", ")}) {
			t.Errorf("debian/control %s: %q, want %q (packaging.%s)", r.field, got, strings.Join(r.want, ", "), r.field)
		}
		var rpm []string
		for _, v := range fieldLines(string(spec), r.field+":") {
			rpm = append(rpm, strings.TrimSpace(v))
		}
		if want := RPMRelations(r.want); !slices.Equal(rpm, want) {
			t.Errorf("rpm/openssi.spec %s: %q, want %q (packaging.%s)", r.field, rpm, want, r.field)
		}
	}
}

// fieldLines are the rests of the lines of text that start with prefix.
func fieldLines(text, prefix string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestShippedConfig: the shipped file names each daemon's unit in the
// comment above its section.
func TestShippedConfig(t *testing.T) {
	cfg := string(ShippedConfig())
	for _, d := range daemons.All {
		if !strings.Contains(cfg, "("+d.Unit+").\n"+d.Name+":\n") {
			t.Errorf("the section of %s does not start with a comment naming %s", d.Name, d.Unit)
		}
	}
}

// TestScriptsAreShell: the maintainer scripts parse as POSIX shell (dash)
// and name every unit.
func TestScriptsAreShell(t *testing.T) {
	sc := MaintainerScripts(daemons.All)
	dir := t.TempDir()
	if err := WriteScripts(dir, sc); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		if out, err := exec.Command("dash", "-n", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
	for _, d := range daemons.All {
		if !strings.Contains(sc.PostInst, d.Unit) || !strings.Contains(sc.PostInst, SbinDir+"/"+d.Binary) {
			t.Errorf("postinst does not handle %s", d.Name)
		}
	}
}

// TestExtraUnits: the units a daemon ships beside its service are unit
// files named for themselves, never one of the generated ones, and are
// staged but not in the spec's units line (whose scriptlets enable them).
// initfailover's openssi-init.target is bound to initfailover, so a node
// whose initfailover stops runs no singleton.
func TestExtraUnits(t *testing.T) {
	seen := map[string]bool{Target: true}
	for _, d := range daemons.All {
		seen[d.Unit] = true
	}
	for _, d := range daemons.All {
		for _, u := range d.Units {
			if seen[u.Name] || !strings.Contains(u.Name, ".") || strings.Contains(u.Name, "/") || !strings.Contains(u.Text, "\n[Unit]\n") {
				t.Errorf("%s ships a unit %q that is not a fresh unit file", d.Name, u.Name)
			}
			seen[u.Name] = true
			if strings.Contains(SpecUnitsLine(), u.Name) {
				t.Errorf("%s: %s is in the spec's units line", d.Name, u.Name)
			}
		}
	}
	d, ok := daemons.Find("initfailover")
	if !ok {
		t.Fatal("initfailover is not registered")
	}
	if len(d.Units) != 1 || d.Units[0].Name != "openssi-init.target" || !strings.Contains(d.Units[0].Text, "\nBindsTo="+d.Unit+"\n") {
		t.Errorf("initfailover's units: %+v", d.Units)
	}
}

func TestRPMRelations(t *testing.T) {
	got := RPMRelations([]string{"consul", "criu (>= 4.2)", "a (= 1:2.0-1)"})
	if want := []string{"consul", "criu >= 4.2", "a = 1:2.0-1"}; !slices.Equal(got, want) {
		t.Errorf("RPMRelations = %q, want %q", got, want)
	}
}
