package runner

import (
	"os"
)

// Adopt returns the Proc of a program this package did not start (a copy
// restored by CRIU, whose parent is a holder process): pid is the
// program's, also its process group's; stdin is the write end of its
// stdin pipe and stdout, stderr the read ends of its output pipes (each
// may be nil); wait waits for its end and returns its status. Signal,
// Kill and the stdio methods work as for a started program; Open does
// nothing.
func Adopt(pid int, stdin, stdout, stderr *os.File, wait func() Status) *Proc {
	p := &Proc{Pid: pid, stdin: stdin, outs: []*os.File{stdout, stderr}, wait: wait}
	if stdin != nil {
		p.Stdin = stdin
	}
	if stdout != nil {
		p.Stdout = stdout
	}
	if stderr != nil {
		p.Stderr = stderr
	}
	return p
}

// waitAdopted is Wait of an adopted program.
func (p *Proc) waitAdopted() Status {
	st := p.wait()
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	if p.onExit != nil {
		p.onExit()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	return st
}
