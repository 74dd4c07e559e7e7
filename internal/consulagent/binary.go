package consulagent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNoBinary is wrapped by every error of [Binary]: no consul binary can be
// run. Its text says how to get one.
var ErrNoBinary = errors.New("consul binary not found (run `make consul`, or set CONSUL_BIN=/path/to/consul)")

// PinnedVersion is the Consul version the project builds and tests against.
const PinnedVersion = "1.20.6"

// DisableEnv names the environment variable that, set to any value, makes
// [Binary] find no consul binary. `make unit` sets it to run every test that
// needs no Consul (the others skip).
const DisableEnv = "OPENSSI_NO_CONSUL"

// Binary returns the path of the consul binary to run: env CONSUL_BIN when
// set, else the pinned build in ~/.cache/openssi/consul-<PinnedVersion>/consul
// (`make consul`), else `consul` on PATH. When none exists, or env
// OPENSSI_NO_CONSUL is set, it returns an error wrapping [ErrNoBinary].
func Binary() (string, error) {
	if os.Getenv(DisableEnv) != "" {
		return "", fmt.Errorf("consulagent: %w: %s is set", ErrNoBinary, DisableEnv)
	}
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("consulagent: %w: CONSUL_BIN=%s is not an executable file", ErrNoBinary, p)
	}
	if p := CachedBinary(); p != "" && isExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("consulagent: %w", ErrNoBinary)
}

// CachedBinary returns where `make consul` (build/consul/build.sh) puts the
// pinned build: ~/.cache/openssi/consul-<PinnedVersion>/consul, or "" when
// there is no home directory. The file may not exist.
func CachedBinary() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "openssi", "consul-"+PinnedVersion, "consul")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
