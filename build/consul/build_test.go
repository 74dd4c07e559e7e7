// Package consulbuild tests build.sh, the script that provides the pinned
// Consul binary. It holds no Go code of its own.
package consulbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/consulagent"
)

const pinned = "Consul v1.20.6"

// fakeConsul writes an executable `consul` into dir whose `version` prints
// first, then lines more lines: enough that a reader which stops after the
// first line closes the pipe while the fake is still writing.
func fakeConsul(t *testing.T, dir, first string, lines int) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "consul")
	script := "#!/bin/sh\n[ \"$1\" = version ] || exit 3\necho '" + first + "'\n"
	if lines > 0 {
		script += "i=0\nwhile [ $i -lt " + strconv.Itoa(lines) + " ]; do echo \"Protocol 2 spoken by default, line $i\"; i=$((i+1)); done\n"
	}
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// check runs `build.sh --check` with PATH reduced to pathDir and the system
// directories, and the cache under cache; it never builds.
func check(t *testing.T, pathDir, cache string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", "build.sh", "--check")
	cmd.Env = []string{
		"PATH=" + pathDir + ":/usr/bin:/bin",
		"HOME=" + t.TempDir(),
		"OPENSSI_CACHE=" + cache,
	}
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out)), 0
}

// TestPinnedVersion: the script builds the version the Go code looks for.
func TestPinnedVersion(t *testing.T) {
	b, err := os.ReadFile("build.sh")
	if err != nil {
		t.Fatal(err)
	}
	want := `CONSUL_VERSION="${CONSUL_VERSION:-` + consulagent.PinnedVersion + `}"`
	if !strings.Contains(string(b), want) {
		t.Fatalf("build.sh lacks %s", want)
	}
	if pinned != "Consul v"+consulagent.PinnedVersion {
		t.Fatalf("the fakes print %q, want Consul v%s", pinned, consulagent.PinnedVersion)
	}
}

func TestCheck(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	tests := []struct {
		name string
		// onPath and inCache are the first lines of the fake binaries'
		// `consul version` ("" for no binary there).
		onPath, inCache string
		want            string // "path", "cache" or "" (exit status 1)
	}{
		{name: "pinned on PATH", onPath: pinned, want: "path"},
		{name: "pinned in cache", inCache: pinned, want: "cache"},
		{name: "PATH wins", onPath: pinned, inCache: pinned, want: "path"},
		{name: "other version on PATH", onPath: "Consul v1.19.0", inCache: pinned, want: "cache"},
		{name: "prefix only", onPath: pinned + "-dev", want: ""},
		{name: "nothing", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pathDir, cache := filepath.Join(dir, "bin"), filepath.Join(dir, "cache")
			paths := map[string]string{}
			if tt.onPath != "" {
				paths["path"] = fakeConsul(t, pathDir, tt.onPath, 3)
			}
			if tt.inCache != "" {
				paths["cache"] = fakeConsul(t, filepath.Join(cache, "consul-1.20.6"), tt.inCache, 3)
			}
			got, code := check(t, pathDir, cache)
			if tt.want == "" {
				if code != 1 {
					t.Fatalf("--check = %q, status %d; want status 1", got, code)
				}
				return
			}
			if code != 0 || got != paths[tt.want] {
				t.Fatalf("--check = %q, status %d; want %q", got, code, paths[tt.want])
			}
		})
	}
}

// TestCheckLongVersionOutput is the regression test of a check that piped
// `consul version` into `head -1` under pipefail: head exits after the first
// line, the writer dies of SIGPIPE, the pipeline fails with status 141 and a
// cached, correct binary was rebuilt (minutes) about one run in three. The
// fake prints many lines so that it is still writing when a reader would stop.
func TestCheckLongVersionOutput(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	want := fakeConsul(t, filepath.Join(cache, "consul-1.20.6"), pinned, 2000)
	for i := range 20 {
		if got, code := check(t, filepath.Join(dir, "empty"), cache); code != 0 || got != want {
			t.Fatalf("run %d: --check = %q, status %d; want %q", i, got, code, want)
		}
	}
}
