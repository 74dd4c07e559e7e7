// Package criuhold is the holder of a program that CRIU restores on the
// node it moved to. vprocd starts its own binary (/proc/self/exe) under
// the name Name as the first process of a fresh PID namespace and a mount
// namespace of its own (so that no PID the program had is ever taken
// there: a restore into the host's namespace fails while its old PID is
// in use); the holder mounts that namespace's /proc, runs
// `criu restore --restore-detached` with the descriptors vprocd gave it
// (the program's new stdio pipes, which criu plugs in with --inherit-fd),
// reports the restored program's PID in the namespace, then reaps it as
// its parent (a detached restore leaves it to the namespace's first
// process) and reports how it ended. When the holder ends, the kernel
// ends whatever else still runs in the namespace.
//
// Its reports are lines on descriptor StatusFD:
//
//	pid N        the program is restored (stopped, with --leave-stopped), PID N in the namespace
//	exit W       it ended, W its wait status (decimal)
//	fail REASON  the restore failed; the holder exits 1
//
// The holder runs in this package's init, in any binary that links it
// (vprocd through package server, server's tests). Its start is on the
// way of every CRIU move (the program is stopped meanwhile), so, as
// package gate, it imports syscall alone (and procself, which does too): its
// init then runs before nearly every other package's (gRPC's, Consul's,
// logrus's ...), which cost a restore several milliseconds when it used
// os, fmt and os/exec.
package criuhold

import (
	"syscall"

	"github.com/openssi/openssi/internal/procself"
)

// Name is argv[0] of a holder.
const Name = "openssi-vproc-criu-hold"

// StatusFD is the descriptor of the holder's reports; the descriptors
// after it are passed on to criu as they are.
const StatusFD = 3

// maxInherited bounds the descriptors passed on to criu.
const maxInherited = 64

func init() {
	if args := procself.Cmdline(); len(args) >= 4 && args[0] == Name {
		syscall.Exit(run(args[1], args[2], args[3:]))
	}
}

// Args returns the arguments of a holder (after Name) that runs criu with
// criuArgs, passing on inherited descriptors StatusFD+1 ..
// StatusFD+inherited, and reads the program's PID from pidfile.
func Args(pidfile string, inherited int, criuArgs []string) []string {
	return append([]string{pidfile, itoa(inherited)}, criuArgs...)
}

func run(pidfile, inherited string, criu []string) int {
	n, ok := atoi(inherited)
	if !ok || n > maxInherited || len(criu) == 0 {
		say("fail bad arguments")
		return 1
	}
	if err := mountProc(); err != "" {
		say("fail " + err)
		return 1
	}
	out, err := runCriu(criu, n)
	// The program holds its stdio now: the holder keeps none of it.
	for i := 1; i <= n; i++ {
		_ = syscall.Close(StatusFD + i)
	}
	if err != "" {
		say("fail criu restore: " + err + ": " + lastLine(out))
		return 1
	}
	b, rerr := readFile(pidfile)
	pid, ok := atoi(trimSpace(string(b)))
	if rerr != nil || !ok || pid <= 1 {
		reason := "not a pid"
		if rerr != nil {
			reason = rerr.Error()
		}
		say("fail no restored pid in " + pidfile + ": " + reason)
		return 1
	}
	say("pid " + itoa(pid))
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			say("fail waiting for pid " + itoa(pid) + ": " + err.Error())
			return 1
		}
		if got == pid {
			say("exit " + itoa(int(uint32(ws))))
			return 0
		}
	}
}

// runCriu runs criu (its path and arguments) with /dev/null as stdin, its
// output (returned) on a pipe, no StatusFD, and descriptors StatusFD+1 ..
// StatusFD+inherited passed on as they are; err is "" when it exited 0.
func runCriu(criu []string, inherited int) (out, err string) {
	var p [2]int
	if e := syscall.Pipe2(p[:], syscall.O_CLOEXEC); e != nil {
		return "", "output pipe: " + e.Error()
	}
	null, e := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if e != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return "", "open /dev/null: " + e.Error()
	}
	files := []uintptr{uintptr(null), uintptr(p[1]), uintptr(p[1]), ^uintptr(0)} // ^0: StatusFD closed
	for i := 1; i <= inherited; i++ {
		files = append(files, uintptr(StatusFD+i))
	}
	pid, e := syscall.ForkExec(criu[0], criu, &syscall.ProcAttr{Env: syscall.Environ(), Files: files})
	syscall.Close(null)
	syscall.Close(p[1])
	if e != nil {
		syscall.Close(p[0])
		return "", "start " + criu[0] + ": " + e.Error()
	}
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, e := syscall.Read(p[0], chunk)
		if e == syscall.EINTR {
			continue
		}
		if e != nil || n <= 0 {
			break
		}
		// Its last line is what is reported: keep the last 64 KiB.
		buf = append(buf, chunk[:n]...)
		if len(buf) > 1<<16 {
			buf = append(buf[:0], buf[len(buf)-1<<15:]...)
		}
	}
	syscall.Close(p[0])
	var ws syscall.WaitStatus
	for {
		_, e = syscall.Wait4(pid, &ws, 0, nil)
		if e != syscall.EINTR {
			break
		}
	}
	switch {
	case e != nil:
		return string(buf), "wait: " + e.Error()
	case ws.Exited() && ws.ExitStatus() == 0:
		return string(buf), ""
	case ws.Signaled():
		return string(buf), "signal: " + ws.Signal().String()
	default:
		return string(buf), "exit status " + itoa(ws.ExitStatus())
	}
}

// say writes one report line on StatusFD.
func say(line string) {
	b := []byte(line + "\n")
	for len(b) > 0 {
		n, err := syscall.Write(StatusFD, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		b = b[n:]
	}
}

// mountProc makes the mount namespace receive the host's mounts but send
// none back, and mounts the PID namespace's /proc on /proc, as criu and the
// program expect. It returns the failure, "" for none.
func mountProc() string {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SLAVE, ""); err != nil {
		return "make / a slave mount: " + err.Error()
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return "mount /proc: " + err.Error()
	}
	return ""
}

// readFile reads a small file (a pid file).
func readFile(name string) ([]byte, error) {
	fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	b := make([]byte, 64)
	n := 0
	for n < len(b) {
		m, err := syscall.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m <= 0 {
			break
		}
		n += m
	}
	return b[:n], nil
}

// lastLine is the last non-empty line of s, at most 200 bytes.
func lastLine(s string) string {
	s = trimSpace(s)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			s = trimSpace(s[i+1:])
			break
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func trimSpace(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// atoi reads a non-negative decimal of at most 9 digits.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// itoa writes n in decimal.
func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	u := uint64(n)
	if neg {
		u = uint64(-n)
	}
	var b [20]byte
	i := len(b)
	for u > 0 {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
