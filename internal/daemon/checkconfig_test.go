package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
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
	} {
		var stdout, stderr bytes.Buffer
		code := main("clmsd", []string{"--check-config", "--config", tc.path}, &stdout, &stderr, func(context.Context, *Env) error {
			t.Fatal("--check-config ran the daemon")
			return nil
		})
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("--check-config %s = %d (%q, %q); want %d mentioning %q", filepath.Base(tc.path), code, stdout.String(), stderr.String(), tc.code, tc.out)
		}
	}
}
