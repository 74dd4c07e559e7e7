package localapi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// SocketMode is the permission of every local API socket: read/write for
// root and the socket group, nothing for others.
const SocketMode fs.FileMode = 0o660

// ErrInUse is returned by [Listen] when a running daemon already answers on
// the socket path.
var ErrInUse = errors.New("in use by a running daemon")

// probeTimeout bounds the connect() that checks whether an existing socket
// is alive. A live listener accepts from its backlog at once; a stale one
// refuses at once.
const probeTimeout = time.Second

// Listen creates the Unix socket at path for a daemon's local API and
// returns its listener.
//
// The parent directory is created (0755) when missing. An existing socket
// file is removed only when nothing answers on it (a leftover of a daemon
// that died); when a daemon answers, Listen fails with an error wrapping
// [ErrInUse] ("localapi: <path> is in use by a running daemon"). A path
// that exists but is not a socket is never removed.
//
// The socket is made [SocketMode] (0660) and, when group is not empty and
// exists, given to group; its owner is the daemon's user (root, or the
// daemon's own system user, which must be a member of group). grouped reports whether the group was
// applied: false with a nil error means the group does not exist (or group
// is empty), so the socket is usable by root only and the caller should log
// a warning. Closing the listener removes the socket file.
func Listen(path, group string) (ln net.Listener, grouped bool, err error) {
	if path == "" {
		return nil, false, errors.New("localapi: empty socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("localapi: create socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, false, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, false, fmt.Errorf("localapi: listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(true)
	fail := func(e error) (net.Listener, bool, error) {
		_ = l.Close()
		return nil, false, e
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		return fail(fmt.Errorf("localapi: chmod %s: %w", path, err))
	}
	if group == "" {
		return l, false, nil
	}
	gid, ok, err := lookupGID(group)
	if err != nil {
		return fail(fmt.Errorf("localapi: look up group %q: %w", group, err))
	}
	if !ok {
		return l, false, nil
	}
	// The owner stays the daemon's user (root, or a daemon's own user
	// that is a member of the group and so needs no CAP_CHOWN).
	if err := os.Chown(path, -1, gid); err != nil {
		return fail(fmt.Errorf("localapi: chgrp %s to %s: %w", path, group, err))
	}
	return l, true, nil
}

// lookupGID resolves a group name; ok is false when the group does not
// exist.
func lookupGID(group string) (gid int, ok bool, err error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, false, nil
		}
		return 0, false, err
	}
	gid, err = strconv.Atoi(g.Gid)
	if err != nil {
		return 0, false, fmt.Errorf("group %q has non-numeric gid %q", group, g.Gid)
	}
	return gid, true, nil
}

// removeStale removes path if it is a socket nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localapi: stat %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("localapi: %s exists and is not a socket; refusing to remove it", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("localapi: %s is %w", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Anything else (timeout on a full backlog, permission) means
		// we cannot prove it is dead: do not take it away.
		return fmt.Errorf("localapi: probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localapi: remove stale socket %s: %w", path, err)
	}
	return nil
}
