// Package version holds the version stamped into every binary at build
// time (make sets it from `git describe`).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set with -ldflags "-X github.com/openssi/openssi/internal/version.Version=v1.2.3".
var Version = ""

// Get returns the stamped version, else the module version recorded by the
// Go toolchain, else "devel".
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// String is the one-line version of a program: "clmsd v0.1.0 (go1.26.8 linux/amd64)".
func String(program string) string {
	return fmt.Sprintf("%s %s (%s %s/%s)", program, Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
