package runner

import "syscall"

// Exit statuses a shell gives, which the runner reports too.
const (
	// ExitNotExecutable is the status of a command that exists but cannot
	// be executed (no permission, not a program, a bad interpreter).
	ExitNotExecutable = 126
	// ExitNotFound is the status of a command that is not found.
	ExitNotFound = 127
	// ExitRefused is the status of a request refused before any command
	// was looked up: a user unknown on this node, a vprocd that may not
	// act as the caller.
	ExitRefused = 125
)

// Status is how a program ended.
type Status struct {
	// Code is what a shell would report: the exit code, or 128+N when
	// signal N ended it.
	Code int
	// Signal is the signal that ended it, or 0.
	Signal int
}

// StatusOf returns the status a shell reports for a wait status.
func StatusOf(ws syscall.WaitStatus) Status {
	switch {
	case ws.Exited():
		return Status{Code: ws.ExitStatus()}
	case ws.Signaled():
		return Status{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	// Stopped or continued: not an end; report it as a failure.
	return Status{Code: 1}
}

// StartError is a program that could not be started: Code is the status
// a shell would give (ExitNotFound, ExitNotExecutable, ExitRefused) and
// Msg the one line to show.
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }
