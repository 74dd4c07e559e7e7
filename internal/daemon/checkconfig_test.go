package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/daemons"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	longLease := filepath.Join(dir, "lease.yaml")
	if err := os.WriteFile(longLease, []byte("dlmd:\n  lease: 1000000h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("cluster:\n  name: test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("cluster:\n  nmae: test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		code int
		out  string
	}{
		{good, ExitOK, "clmsd: configuration is valid"},
		{bad, ExitConfig, "nmae"},
		{filepath.Join(dir, "missing.yaml"), ExitConfig, "missing.yaml"},
		// A lease past dlmdspec.MaxLease (60s) would keep a lost node's
		// locks out of reach for ever.
		{longLease, ExitConfig, `dlmd.lease: "1000000h0m0s" is not valid: want a duration 200ms..60s`},
	} {
		var stdout, stderr bytes.Buffer
		code := main(daemons.All[0], daemons.Sections(), []string{"--check-config", "--config", tc.path}, &stdout, &stderr, func(context.Context, *Env) error {
			t.Fatal("--check-config ran the daemon")
			return nil
		})
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("--check-config %s = %d (%q, %q); want %d mentioning %q", filepath.Base(tc.path), code, stdout.String(), stderr.String(), tc.code, tc.out)
		}
	}
}

// TestHelp: every daemon's --help shows its description and its own flags,
// and the sections of the other daemons are accepted in its file.
func TestHelp(t *testing.T) {
	for _, d := range daemons.All {
		var stdout, stderr bytes.Buffer
		code := main(d, daemons.Sections(), []string{"--help"}, &stdout, &stderr, nil)
		if code != ExitOK || !strings.Contains(stdout.String(), d.About) || !strings.HasPrefix(stdout.String(), "Usage: "+d.Name+" [flags]") {
			t.Errorf("%s --help = %d:\n%s%s", d.Name, code, stdout.String(), stderr.String())
		}
		for _, f := range d.Config.Flags {
			if !strings.Contains(stdout.String(), "--"+f.Name) || !strings.Contains(stdout.String(), "(overrides "+d.Name+"."+f.Key+")") {
				t.Errorf("%s --help does not show --%s", d.Name, f.Name)
			}
		}
	}
}
