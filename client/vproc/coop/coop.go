// Package coop lets a Go program opt in to cooperative migration: vprocd
// asks it for its state when it moves the program to another node, and
// starts the same executable there with that state. It speaks the
// protocol of docs/cooperative-migration.md (the frames of package
// daemons/vprocd/coop) over the socket vprocd names in
// OPENSSI_CHECKPOINT_SOCK.
//
// A program calls Register once, early in main, before it does anything
// visible, and lets its work run only after Register returns:
//
//	var mu sync.Mutex
//	var n int
//	s, err := coop.RegisterProgram(coop.Program{
//		// Stop (hold the lock the work takes) and say where we are.
//		Checkpoint: func() ([]byte, error) { mu.Lock(); return []byte(strconv.Itoa(n)), nil },
//		// On the target, before Register returns: take the state on.
//		Restore: func(b []byte) (err error) { n, err = strconv.Atoi(string(b)); return err },
//		// The move failed: go on where we stopped.
//		Resume: func() { mu.Unlock() },
//	})
//	if err != nil && !errors.Is(err, coop.ErrNotManaged) { log.Fatal(err) }
//	for { mu.Lock(); n++; fmt.Println(n); mu.Unlock() }
//
// On the source, after Checkpoint returned, the program must do nothing
// visible (no output, no writes) until Resume: if the move commits,
// vprocd ends it, and the copy on the target goes on from the state.
package coop

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	wire "github.com/openssi/openssi/daemons/vprocd/coop"
)

// ErrNotManaged: the program was not started by vprocd as a migratable
// program (OPENSSI_CHECKPOINT_SOCK is not set). It runs normally; it just
// cannot move.
var ErrNotManaged = errors.New("coop: not started by vprocd for cooperative migration (" + wire.EnvSocket + " unset)")

// Program is what a program registers.
type Program struct {
	// Checkpoint stops the program's visible work and returns its state
	// (at most Limits.State bytes). Required.
	Checkpoint func() ([]byte, error)
	// Restore takes a state on, on the target, before Register returns.
	// Required.
	Restore func([]byte) error
	// Resume, if set, is called when a move the program checkpointed for
	// failed: the program goes on where it stopped.
	Resume func()
	// Limits bounds the state (64 MiB by default; vprocd's limit is the
	// one that counts).
	Limits wire.Limits
}

// Session is a registered program's link to vprocd.
type Session struct {
	conn net.Conn
	p    Program
	done chan struct{}

	mu  sync.Mutex
	err error
}

// Register registers checkpoint and restore (see Program); it is
// RegisterProgram without a Resume.
func Register(checkpoint func() ([]byte, error), restore func([]byte) error) (*Session, error) {
	return RegisterProgram(Program{Checkpoint: checkpoint, Restore: restore})
}

// RegisterProgram connects to vprocd and, when the program is started on
// a migration's target, restores its state and waits for the go-ahead
// before returning. It then serves vprocd's checkpoint requests until the
// connection ends. It removes OPENSSI_CHECKPOINT_SOCK and OPENSSI_RESTORE
// from the environment, so that children do not inherit them.
func RegisterProgram(p Program) (*Session, error) {
	if p.Checkpoint == nil || p.Restore == nil {
		return nil, errors.New("coop: Checkpoint and Restore are required")
	}
	path := os.Getenv(wire.EnvSocket)
	if path == "" {
		return nil, ErrNotManaged
	}
	_ = os.Unsetenv(wire.EnvSocket)
	_ = os.Unsetenv(wire.EnvRestore)
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("coop: %w", err)
	}
	s := &Session{conn: conn, p: p, done: make(chan struct{})}
	if err := s.start(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	go s.serve()
	return s, nil
}

func (s *Session) write(f wire.Frame) error {
	return wire.Write(s.conn, f, s.p.Limits)
}

func (s *Session) read() (wire.Frame, error) {
	f, err := wire.Read(s.conn, s.p.Limits)
	if err != nil {
		return f, fmt.Errorf("coop: %w", err)
	}
	if f.Type == wire.Error {
		return f, fmt.Errorf("coop: vprocd: %s", f.Payload)
	}
	return f, nil
}

// start says hello and gets going: from the beginning, or from a state.
func (s *Session) start() error {
	if err := s.write(wire.HelloFrame()); err != nil {
		return fmt.Errorf("coop: %w", err)
	}
	f, err := s.read()
	if err != nil {
		return err
	}
	switch f.Type {
	case wire.Start:
		return nil
	case wire.State:
		if err := s.p.Restore(f.Payload); err != nil {
			_ = s.write(wire.ErrorFrame(err.Error()))
			return fmt.Errorf("coop: restore: %w", err)
		}
		if err := s.write(wire.Frame{Type: wire.Restored}); err != nil {
			return fmt.Errorf("coop: %w", err)
		}
		f, err := s.read()
		if err != nil {
			return err
		}
		if f.Type != wire.Resume {
			return s.broken(f)
		}
		return nil
	}
	return s.broken(f)
}

func (s *Session) broken(f wire.Frame) error {
	err := fmt.Errorf("coop: unexpected %s from vprocd", f.Type)
	_ = s.write(wire.ErrorFrame(err.Error()))
	return err
}

// serve answers checkpoint requests until the connection ends.
func (s *Session) serve() {
	defer close(s.done)
	for {
		f, err := s.read()
		if err != nil {
			s.stop(err)
			return
		}
		if f.Type != wire.Checkpoint {
			s.stop(s.broken(f))
			return
		}
		state, err := s.p.Checkpoint()
		if err == nil && len(state) > s.limit() {
			err = fmt.Errorf("state of %d bytes over the limit of %d", len(state), s.limit())
		}
		if err != nil {
			// Nothing was stopped for good: the move fails and the
			// program goes on (Checkpoint must leave it running when it
			// fails).
			if werr := s.write(wire.ErrorFrame(err.Error())); werr != nil {
				s.stop(werr)
				return
			}
			continue
		}
		if err := s.write(wire.Frame{Type: wire.State, Payload: state}); err != nil {
			s.stop(fmt.Errorf("coop: %w", err))
			return
		}
		// Now stopped: vprocd ends the program if the move commits.
		f, err = s.read()
		if err != nil {
			s.stop(err)
			return
		}
		if f.Type != wire.Resume {
			s.stop(s.broken(f))
			return
		}
		if s.p.Resume != nil {
			s.p.Resume()
		}
	}
}

func (s *Session) limit() int {
	if s.p.Limits.State > 0 {
		return s.p.Limits.State
	}
	return wire.DefaultStateLimit
}

func (s *Session) stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// Done is closed when the session ended (vprocd closed it, or it broke):
// the program runs on but can no longer move.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended, once Done is closed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session; the program can no longer move.
func (s *Session) Close() error {
	err := s.conn.Close()
	<-s.done
	return err
}
