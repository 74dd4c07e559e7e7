package consulagent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTunedHCL(t *testing.T) {
	got := TunedSettings().HCL()
	for _, want := range []string{
		`probe_interval  = "100ms"`,
		`probe_timeout   = "50ms"`,
		`gossip_interval = "20ms"`,
		`suspicion_mult  = 2`,
		`retransmit_mult = 4`,
		`raft_multiplier  = 1`,
		`rpc_hold_timeout = "1s"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TunedSettings().HCL() lacks %q:\n%s", want, got)
		}
	}
}

func TestBinary(t *testing.T) {
	exe := func(dir string) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "consul")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		// set prepares the environment under dir and returns the binary
		// Binary must find, "" for an error.
		set     func(dir string) string
		wantErr string
	}{
		{name: "CONSUL_BIN", set: func(dir string) string {
			p := exe(filepath.Join(dir, "x"))
			t.Setenv("CONSUL_BIN", p)
			exe(filepath.Join(dir, "home", ".cache", "openssi", "consul-"+PinnedVersion))
			return p
		}},
		{name: "CONSUL_BIN missing", set: func(dir string) string {
			t.Setenv("CONSUL_BIN", filepath.Join(dir, "nonexistent"))
			exe(filepath.Join(dir, "path"))
			return ""
		}, wantErr: "is not an executable file"},
		{name: "CONSUL_BIN not executable", set: func(dir string) string {
			p := filepath.Join(dir, "consul")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("CONSUL_BIN", p)
			return ""
		}, wantErr: "is not an executable file"},
		{name: "pinned cache", set: func(dir string) string {
			exe(filepath.Join(dir, "path"))
			return exe(filepath.Join(dir, "home", ".cache", "openssi", "consul-"+PinnedVersion))
		}},
		{name: "PATH", set: func(dir string) string {
			return exe(filepath.Join(dir, "path"))
		}},
		{name: "none", set: func(string) string { return "" }, wantErr: "run `make consul`, or set CONSUL_BIN"},
		{name: "hidden", set: func(dir string) string {
			t.Setenv("CONSUL_BIN", exe(filepath.Join(dir, "x")))
			t.Setenv(DisableEnv, "1")
			return ""
		}, wantErr: "OPENSSI_NO_CONSUL is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("CONSUL_BIN", "")
			t.Setenv(DisableEnv, "")
			t.Setenv("HOME", filepath.Join(dir, "home"))
			t.Setenv("PATH", filepath.Join(dir, "path"))
			want := tt.set(dir)
			got, err := Binary()
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrNoBinary) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Binary() = %q, %v; want an ErrNoBinary error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("Binary() = %q, %v; want %q", got, err, want)
			}
		})
	}
}
