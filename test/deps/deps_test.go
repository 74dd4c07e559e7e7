// Package deps checks what the programs of the module link and what a build
// leaves behind. It holds no code of its own.
package deps

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// pkg is the part of `go list -json` the tests read.
type pkg struct {
	ImportPath string
	Name       string
	Dir        string
	Deps       []string
	Imports    []string
}

// list runs `go list -json` from the module root and decodes its stream.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// testOnly reports whether an import path is package testing or a test
// helper: a package whose name ends in "test" (consultest, nodetest,
// rpctest, net/http/httptest...). The standard library's own internal
// packages (internal/synctest, which the runtime links) are not.
func testOnly(importPath string) bool {
	std := !strings.Contains(strings.Split(importPath, "/")[0], ".")
	if std && (strings.HasPrefix(importPath, "internal/") || strings.Contains(importPath, "/internal/")) {
		return false
	}
	return importPath == "testing" || strings.HasPrefix(importPath, "testing/") ||
		strings.HasSuffix(path.Base(importPath), "test")
}

// TestProgramsLinkNoTestCode keeps package testing and the test helpers out
// of what is shipped or run as a tool: the daemons, ssi and the lab.
func TestProgramsLinkNoTestCode(t *testing.T) {
	programs := 0
	for _, p := range list(t, "./daemons/...", "./cmd/...", "./lab/cmd/...") {
		if p.Name != "main" {
			continue
		}
		programs++
		var bad []string
		for _, d := range p.Deps {
			if testOnly(d) {
				bad = append(bad, d)
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s links test code: %s (go list -deps %s | grep test, then move what it needs out of the test helper)",
				p.ImportPath, strings.Join(bad, ", "), p.ImportPath)
		}
	}
	if programs < 4 { // clmsd, dlmd, ssi, lab at least
		t.Fatalf("found %d programs; the patterns no longer match the tree", programs)
	}
}

func TestTestOnly(t *testing.T) {
	for imp, want := range map[string]bool{
		"testing":           true,
		"testing/fstest":    true,
		"net/http/httptest": true,
		"github.com/openssi/openssi/internal/consultest":  true,
		"github.com/openssi/openssi/internal/rpc/rpctest": true,
		"github.com/openssi/openssi/internal/consulagent": false,
		"internal/testlog": false, // os imports it; it is not package testing
		"github.com/openssi/openssi/daemons/dlmd/server": false,
	} {
		if got := testOnly(imp); got != want {
			t.Errorf("testOnly(%q) = %v, want %v", imp, got, want)
		}
	}
}

// TestBuildOutputsIgnored: `go build ./<dir>` at the root leaves the program
// named after its folder there; .gitignore must list it, or a binary gets
// committed again (a 22 MB dlmd once was).
func TestBuildOutputsIgnored(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		t.Skip("not a git work tree")
	}
	for _, p := range list(t, "./...") {
		if p.Name != "main" {
			continue
		}
		name := filepath.Base(p.Dir)
		if fi, err := os.Stat(filepath.Join(root, name)); err == nil && fi.IsDir() {
			continue // go build refuses to write over a folder
		}
		cmd := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", name)
		if err := cmd.Run(); err != nil {
			t.Errorf("a root-level %s (go build %s) is not ignored: add /%s to .gitignore", name, p.ImportPath, name)
		}
	}
}

// TestSsiUsesClientLibraries: the ssi commands talk to the daemons through
// the client libraries (client/...), as any program would, never through a
// generated gRPC client of their own, so every wire detail has one owner.
func TestSsiUsesClientLibraries(t *testing.T) {
	checked := 0
	for _, p := range list(t, "./cmd/...") {
		checked++
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, "github.com/openssi/openssi/proto/") || strings.HasPrefix(imp, "google.golang.org/grpc") {
				t.Errorf("%s imports %s directly: add what it needs to a package under client/ and use that", p.ImportPath, imp)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package under ./cmd/...; the pattern no longer matches the tree")
	}
}
