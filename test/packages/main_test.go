//go:build packages

// Package packages checks OpenSSI's native packages end to end: the .deb
// and .rpm built by packaging/ (nfpm), the debian/ source package, the
// rpm spec, lintian and rpmlint, the systemd units (verify and security
// exposure), an install/upgrade/purge in a real bookworm system without
// systemd running, and a boot under real systemd with a Consul agent.
//
// Run as root with `make check-packages` (build tag "packages"). A missing
// tool or part fails the test with a message naming it; nothing is
// skipped.
package packages

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/openssi/openssi/packaging"
)

// tools maps each command the checks run to the Debian package providing it.
var tools = map[string]string{
	"dpkg-deb": "dpkg", "dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "fakeroot": "fakeroot",
	"lintian": "lintian", "rpm": "rpm", "rpmspec": "rpm", "rpmlint": "rpmlint", "createrepo_c": "createrepo-c",
	"apt-ftparchive": "apt-utils", "gpg": "gnupg", "debootstrap": "debootstrap",
	"systemd-nspawn": "systemd-container", "systemd-analyze": "systemd", "nsenter": "util-linux",
	"apt-cache": "apt", "git": "git", "go": "(Go toolchain)",
}

// need fails t when a command is missing, naming the package to install.
func need(t *testing.T, cmds ...string) {
	t.Helper()
	var missing []string
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", c, tools[c]))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing tools: %s", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		t.Fatal("the package checks need root (dpkg-buildpackage, systemd-nspawn)")
	}
}

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// builds are made once per test binary.
type builds struct {
	dir    string
	v1, v2 packaging.Built // v2: newer version, changed conffile
	err    error
}

var (
	buildOnce sync.Once
	built     builds
)

// upgradeMark is appended to the conffile of the newer build.
const upgradeMark = "# changed in the upgrade test build\n"

// packages builds the .deb and .rpm of the work tree (v1) and a newer
// build with a changed conffile (v2).
func packages(t *testing.T) builds {
	t.Helper()
	need(t, "go", "git")
	buildOnce.Do(func() {
		root := repoRoot(t)
		dir, err := os.MkdirTemp("", "openssi-packages-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		v, err := packaging.GitVersion(root)
		if err != nil {
			built.err = err
			return
		}
		if built.v1, err = packaging.Build(packaging.BuildOptions{RepoDir: root, OutDir: filepath.Join(dir, "v1"), Version: v}); err != nil {
			built.err = err
			return
		}
		built.v2, built.err = packaging.Build(packaging.BuildOptions{RepoDir: root, OutDir: filepath.Join(dir, "v2"), Version: v + ".1", ConfigAppend: upgradeMark})
	})
	if built.err != nil {
		t.Fatalf("building the packages: %v", built.err)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// run runs a command and fails t with its output when it fails.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sha(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

// debPaths lists the paths in a .deb's data (dirs end in /).
func debPaths(t *testing.T, deb string) []string {
	t.Helper()
	var paths []string
	out := run(t, "", "sh", "-c", "dpkg-deb --fsys-tarfile \"$1\" | tar -t", "sh", deb)
	for _, p := range strings.Split(strings.TrimSpace(out), "\n") {
		p = strings.TrimPrefix(p, ".")
		if p == "/" || p == "" {
			continue
		}
		paths = append(paths, p)
	}
	return paths
}
