// Package procself reads this process's own arguments from /proc without
// package os, for code that runs in a package initialiser before nearly
// every other package's: vprocd's gate and CRIU holder, ssi's early exec.
// A program's packages are initialised in the order of their import paths
// once their own imports are (the Go spec, since Go 1.21), so such code
// imports syscall alone, and this package imports nothing else either.
package procself

import "syscall"

// Cmdline returns this process's arguments (nil when unreadable), read
// from /proc/self/cmdline.
func Cmdline() []string {
	fd, err := syscall.Open("/proc/self/cmdline", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := syscall.Read(fd, chunk)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil
		}
		if n <= 0 {
			break
		}
		buf = append(buf, chunk[:n]...)
	}
	return SplitArgs(buf)
}

// SplitArgs splits a /proc/<pid>/cmdline text into its arguments: each
// ends with a NUL (a last one without is taken whole).
func SplitArgs(b []byte) []string {
	var args []string
	start := 0
	for i, c := range b {
		if c == 0 {
			args = append(args, string(b[start:i]))
			start = i + 1
		}
	}
	if start < len(b) {
		args = append(args, string(b[start:]))
	}
	return args
}
