//go:build !linux

package consulagent

import (
	"syscall"
)

// sysProcAttr puts each agent into its own process group so the whole group
// can be killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
