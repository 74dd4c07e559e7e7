package execwire

import "syscall"

// Passable says whether descriptor fd may be passed to vprocd as a
// caller's stdio (passed_stdio): a pipe open for reading (for writing,
// with write). Anything else stays the caller's to stream: a terminal
// (job control applies to the caller), a regular file (vprocd is root,
// and its I/O on a file would be root's), a socket or a device.
func Passable(fd int, write bool) bool {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return false
	}
	fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if errno != 0 || fl&oPath != 0 {
		return false
	}
	acc := fl & syscall.O_ACCMODE
	return acc == syscall.O_RDWR || (write && acc == syscall.O_WRONLY) || (!write && acc == syscall.O_RDONLY)
}

// oPath is Linux's O_PATH, which package syscall does not name.
const oPath = 0x200000
