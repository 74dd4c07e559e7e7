package consultest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNoBinary is returned by [Binary] when no consul binary can be found.
var ErrNoBinary = errors.New("consul binary not found: run `make consul` or set CONSUL_BIN")

// PinnedVersion is the Consul version the project builds and tests against.
const PinnedVersion = "1.20.6"

// Binary returns the path of the consul binary to run: env CONSUL_BIN when
// set, else the pinned build in ~/.cache/openssi/consul-<PinnedVersion>/consul,
// else `consul` on PATH. It returns [ErrNoBinary] when none exists.
func Binary() (string, error) {
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", ErrNoBinary
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "openssi", "consul-"+PinnedVersion, "consul")
		if isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", ErrNoBinary
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
