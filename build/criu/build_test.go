// Package criubuild tests build.sh, the script that provides the pinned CRIU
// binary. It holds no Go code of its own.
package criubuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/criu"
)

const pinned = "Version: 4.2.1"

// fakeCRIU writes an executable `criu` into dir whose `--version` prints
// first and a GitID line, as CRIU does.
func fakeCRIU(t *testing.T, dir, first string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "criu")
	script := "#!/bin/sh\n[ \"$1\" = --version ] || exit 3\necho '" + first + "'\necho 'GitID: v4.2.1'\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPinnedVersion: the script builds a version internal/criu accepts.
func TestPinnedVersion(t *testing.T) {
	b, err := os.ReadFile("build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nCRIU_VERSION=4.2.1\n") {
		t.Fatal("build.sh does not pin CRIU_VERSION=4.2.1")
	}
	v, err := criu.ParseVersion([]byte(pinned + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Less(criu.MinVersion) {
		t.Fatalf("pinned %v is older than internal/criu's minimum %v", v, criu.MinVersion)
	}
}

func TestCheck(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	tests := []struct {
		name            string
		onPath, inCache string // first line of the fakes' --version ("" for none)
		want            string // "path", "cache" or "" (exit status 1)
	}{
		{name: "pinned on PATH", onPath: pinned, want: "path"},
		{name: "pinned in cache", inCache: pinned, want: "cache"},
		{name: "PATH wins", onPath: pinned, inCache: pinned, want: "path"},
		{name: "bookworm's on PATH", onPath: "Version: 3.17.1", inCache: pinned, want: "cache"},
		{name: "prefix only", onPath: pinned + "-dev", want: ""},
		{name: "nothing", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pathDir, cache := filepath.Join(dir, "bin"), filepath.Join(dir, "cache")
			paths := map[string]string{}
			if tt.onPath != "" {
				paths["path"] = fakeCRIU(t, pathDir, tt.onPath)
			}
			if tt.inCache != "" {
				paths["cache"] = fakeCRIU(t, filepath.Join(cache, "criu-4.2.1"), tt.inCache)
			}
			cmd := exec.Command("bash", "build.sh", "--check")
			cmd.Env = []string{"PATH=" + pathDir + ":/usr/bin:/bin", "HOME=" + t.TempDir(), "OPENSSI_CACHE=" + cache}
			out, err := cmd.Output()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			got := strings.TrimSpace(string(out))
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
