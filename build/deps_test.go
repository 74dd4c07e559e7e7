// Package build tests the scripts of build/. It holds no Go code of its own.
package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystem is a PATH directory with fake dpkg-query, apt-get and id: the
// packages named in installed are installed, apt-get logs its arguments to
// log, id -u prints uid.
func fakeSystem(t *testing.T, dir, uid string, installed []string) (bin, log string) {
	t.Helper()
	bin, log = filepath.Join(dir, "bin"), filepath.Join(dir, "apt.log")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		"dpkg-query": "for p in " + strings.Join(installed, " ") + "; do\n" +
			"\t[ \"$p\" = \"$3\" ] && { printf 'install ok installed'; exit 0; }\ndone\n" +
			"echo \"dpkg-query: no packages found matching $3\" >&2\nexit 1\n",
		"apt-get": "echo \"$*\" >> " + log + "\n",
		"id":      "echo " + uid + "\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, log
}

func TestDeps(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	lab := []string{"git", "ca-certificates", "debootstrap", "systemd-container", "gnupg", "apt-utils", "createrepo-c", "rpm", "fakeroot", "iproute2", "util-linux", "openssh-client"}
	ansible := []string{"ansible-core", "ansible-lint", "yamllint", "vagrant", "openssl"}
	test := append(append([]string{"protobuf-compiler", "make", "lintian", "rpmlint", "dpkg-dev", "debhelper", "strace"}, lab...), ansible...)
	tests := []struct {
		name      string
		uid       string
		installed []string
		runs      [][]string // the script runs these argument lists in turn
		wantCode  int        // of the last run
		wantApt   []string   // apt-get calls of all runs
		wantErr   string     // in the last run's stderr
	}{
		{name: "nothing missing: silent, no root needed", uid: "1000", installed: test,
			runs: [][]string{{"test"}, {"lab"}, {"proto"}}},
		{name: "missing: update then install only those", uid: "0", installed: append(append([]string(nil), lab...), ansible...),
			runs:    [][]string{{"proto", "test"}},
			wantApt: []string{"update -qq", "install -y -qq --no-install-recommends protobuf-compiler make lintian rpmlint dpkg-dev debhelper strace"}},
		{name: "ansible installs the lint tools of ansible/ and vagrant/ only", uid: "0", installed: lab,
			runs:    [][]string{{"ansible"}},
			wantApt: []string{"update -qq", "install -y -qq --no-install-recommends ansible-core ansible-lint yamllint vagrant openssl"}},
		{name: "lab does not install the test tools", uid: "0", installed: lab[1:],
			runs:    [][]string{{"lab"}},
			wantApt: []string{"update -qq", "install -y -qq --no-install-recommends git"}},
		{name: "criu installs what building CRIU needs, not the test tools", uid: "0", installed: test,
			runs: [][]string{{"criu"}},
			wantApt: []string{"update -qq", "install -y -qq --no-install-recommends gcc pkg-config curl xz-utils " +
				"libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler libnl-3-dev libcap-dev libnet1-dev uuid-dev"}},
		{name: "missing without root: one line, nothing run", uid: "1000", installed: lab,
			runs: [][]string{{"proto"}}, wantCode: 1,
			wantErr: "build/deps.sh: needs root to install protobuf-compiler: run make as root (sudo make ...) or apt-get install them\n"},
		{name: "lists updated once an hour for the package checks", uid: "0", installed: test,
			runs:    [][]string{{"--update-lists", "test"}, {"--update-lists", "test"}, {"test"}},
			wantApt: []string{"update -qq"}},
		{name: "lists without root", uid: "1000", installed: test,
			runs: [][]string{{"--update-lists", "test"}}, wantCode: 1, wantErr: "needs root to update the apt lists"},
		{name: "unknown group", uid: "0", runs: [][]string{{"all"}}, wantCode: 2, wantErr: "usage:"},
		{name: "no group", uid: "0", runs: [][]string{{"--update-lists"}}, wantCode: 2, wantErr: "usage:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin, log := fakeSystem(t, dir, tt.uid, tt.installed)
			var code int
			var stderr strings.Builder
			for _, args := range tt.runs {
				stderr.Reset()
				cmd := exec.Command("bash", append([]string{"deps.sh"}, args...)...)
				cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + dir, "OPENSSI_CACHE=" + filepath.Join(dir, "cache")}
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				code = 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if len(out) != 0 {
					t.Errorf("deps.sh %v wrote to stdout: %q", args, out)
				}
			}
			if code != tt.wantCode {
				t.Errorf("status %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if tt.wantErr == "" && tt.wantApt == nil && stderr.Len() != 0 {
				t.Errorf("stderr %q, want nothing", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.wantErr)
			}
			b, _ := os.ReadFile(log)
			var apt []string
			if s := strings.TrimSpace(string(b)); s != "" {
				apt = strings.Split(s, "\n")
			}
			if strings.Join(apt, "\n") != strings.Join(tt.wantApt, "\n") {
				t.Errorf("apt-get calls:\n%s\nwant:\n%s", strings.Join(apt, "\n"), strings.Join(tt.wantApt, "\n"))
			}
		})
	}
}
