package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The programs vprocd holds for a move (a source's original, checkpointed;
// a target's copy, restored and not yet resumed) must not outlive a vprocd
// that restarts: its new move protocol knows nothing of them, and the
// arbiter may decide their move either way without them (package
// migrate's doc). So each is marked by a file under the checkpoint
// sockets' directory, named by its pid and start time, while it is held;
// at start vprocd ends the marked processes that still run
// (EndHeldCopies).

// runDir is vprocd's directory of migration under /run (a tmpfs): the
// checkpoint sockets, the marks of held programs, CRIU's images.
func (s *Server) runDir() string {
	if s.cfg.CoopDir == "" {
		return DefaultCoopDir
	}
	return s.cfg.CoopDir
}

// heldDir is where the marks are.
func (s *Server) heldDir() string { return filepath.Join(s.runDir(), "held") }

// runSubdir makes directory name under the runtime directory, root's
// only, and the runtime directory itself if missing as newCoopLink makes
// it (0711: a program reaches its checkpoint socket through it), whichever
// comes first.
func (s *Server) runSubdir(name string) (string, error) {
	if err := os.MkdirAll(s.runDir(), 0o711); err != nil {
		return "", err
	}
	d := filepath.Join(s.runDir(), name)
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return d, nil
}

// markHeld marks process pid as held for a move; the returned func
// removes the mark.
func (s *Server) markHeld(pid int) (unmark func()) {
	st, err := readProc(int32(pid))
	if err != nil {
		return func() {}
	}
	dir, err := s.runSubdir("held")
	name := filepath.Join(dir, fmt.Sprintf("%d-%d", pid, st.start))
	if err == nil {
		err = os.WriteFile(name, nil, 0o600)
	}
	if err != nil {
		s.log.WithError(err).Warn("cannot mark a program held for a move: a restart of vprocd would not end it")
		return func() {}
	}
	return func() { os.Remove(name) }
}

// EndHeldCopies ends the programs a previous vprocd held for moves
// (checkpointed or restored, not yet let go) that still run, and returns
// how many, and removes the CRIU images of moves it left unfinished. main
// calls it at start, before any move.
func (s *Server) EndHeldCopies() int {
	if err := os.RemoveAll(filepath.Join(s.runDir(), "images")); err != nil {
		s.log.WithError(err).Warn("cannot remove the CRIU images of a previous vprocd")
	}
	dir := s.heldDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	ended := 0
	for _, e := range ents {
		name := e.Name()
		os.Remove(filepath.Join(dir, name))
		p, t, ok := strings.Cut(name, "-")
		pid, err1 := strconv.ParseInt(p, 10, 32)
		start, err2 := strconv.ParseUint(t, 10, 64)
		if !ok || err1 != nil || err2 != nil || pid < 2 {
			continue
		}
		st, err := readProc(int32(pid))
		if err != nil || st.start != start {
			continue // gone, or its pid is another's now
		}
		h, err := openProc(int32(pid))
		if err != nil {
			continue
		}
		// It leads its own group (runner): its children go with it.
		if st.pgrp == int32(pid) {
			_ = syscall.Kill(-int(pid), syscall.SIGKILL)
		}
		_ = h.signal(syscall.SIGKILL)
		h.close()
		s.log.WithField("pid", pid).Warn("ended a program a previous vprocd held for a move")
		ended++
	}
	return ended
}
