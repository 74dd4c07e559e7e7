package packaging

import (
	"os/exec"
	"path/filepath"
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
	for _, d := range daemons.All {
		if _, ok := Profiles[d.Name]; !ok {
			t.Errorf("daemon %s has no hardening profile", d.Name)
		}
	}
	for _, planned := range []string{"clmsd", "dlmd", "vprocd", "ipcd", "cfsd", "lvsd", "keepalived", "initfailover"} {
		if _, ok := Profiles[planned]; !ok {
			t.Errorf("planned daemon %s has no hardening profile", planned)
		}
	}
}

func TestServiceUnit(t *testing.T) {
	var prior []daemons.Daemon
	for _, d := range daemons.All {
		u := ServiceUnit(d, Profiles[d.Name], prior)
		for _, want := range []string{
			"Type=notify\n", "WatchdogSec=30s\n", "Restart=on-failure\n", "RestartPreventExitStatus=2\n",
			"PartOf=openssi.target\n", "WantedBy=openssi.target\n", "Wants=network-online.target consul.service\n",
			"StartLimitBurst=", "ExecStart=/usr/sbin/" + d.Binary + "\n", "NoNewPrivileges=yes\n",
			"Environment=GOTRACEBACK=crash\n", "CapabilityBoundingSet=", "RestrictAddressFamilies=",
		} {
			if !strings.Contains(u, want) {
				t.Errorf("%s lacks %q", d.Unit, want)
			}
		}
		for _, p := range prior {
			if !strings.Contains(u, " "+p.Unit) {
				t.Errorf("%s is not ordered after %s", d.Unit, p.Unit)
			}
		}
		prior = append(prior, d)
	}
	clmsd := ServiceUnit(daemons.Daemon{Name: "clmsd", Binary: "clmsd", Unit: "openssi-clmsd.service"}, Profiles["clmsd"], nil)
	for _, want := range []string{"CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n", "ProtectSystem=strict\n", "ReadWritePaths=/run/openssi /var/lib/openssi\n"} {
		if !strings.Contains(clmsd, want) {
			t.Errorf("clmsd unit lacks %q", want)
		}
	}
	cfsd := ServiceUnit(daemons.Daemon{Name: "cfsd", Binary: "cfsd", Unit: "openssi-cfsd.service"}, Profiles["cfsd"], nil)
	for _, want := range []string{"DeviceAllow=/dev/fuse rw\n", "SystemCallFilter=@mount\n", "ProtectSystem=no\n"} {
		if !strings.Contains(cfsd, want) {
			t.Errorf("cfsd unit lacks %q", want)
		}
	}
	if strings.Contains(cfsd, "ReadWritePaths=") || strings.Contains(cfsd, "ProtectProc=") {
		t.Error("cfsd unit keeps a directive its profile removes")
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
