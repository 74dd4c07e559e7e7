// Package integration tests the daemons against real Consul clusters on
// loopback addresses (see internal/consultest and internal/nodetest).
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/openssi/openssi/internal/nodetest"
)

// clmsdBin is built once for the package.
var clmsdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "openssi-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clmsdBin, err = nodetest.BuildClmsd(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
