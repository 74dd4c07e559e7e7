package consulagent

import (
	"syscall"
)

// sysProcAttr puts each agent into its own process group (so the whole group
// can be killed) and asks the kernel to SIGKILL it should the test binary die
// without running its cleanups (for example on a `go test -timeout` panic).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
