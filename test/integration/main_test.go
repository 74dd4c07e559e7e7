// Package integration tests the daemons against real Consul clusters on
// loopback addresses (see internal/consulagent, internal/consultest and
// internal/nodetest). Without a consul binary those tests skip.
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/openssi/openssi/internal/nodetest"
)

// clmsdBin, dlmdBin, vprocdBin, initfailoverBin, keepalivedBin, lvsdBin
// and cfsdBin are built once for the package.
var clmsdBin, dlmdBin, vprocdBin, initfailoverBin, keepalivedBin, lvsdBin, cfsdBin string

func TestMain(m *testing.M) {
	if os.Getenv(dlmChildEnv) != "" {
		os.Exit(dlmChild())
	}
	dir, err := os.MkdirTemp("", "openssi-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clmsdBin, err = nodetest.BuildClmsd(dir)
	if err == nil {
		dlmdBin, err = nodetest.BuildDlmd(dir)
	}
	if err == nil {
		vprocdBin, err = nodetest.Build(dir, "vprocd")
	}
	if err == nil {
		initfailoverBin, err = nodetest.Build(dir, "initfailover")
	}
	if err == nil {
		keepalivedBin, err = nodetest.Build(dir, "keepalived")
	}
	if err == nil {
		lvsdBin, err = nodetest.Build(dir, "lvsd")
	}
	if err == nil {
		cfsdBin, err = nodetest.Build(dir, "cfsd")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
