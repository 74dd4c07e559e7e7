// Package fsident runs code with a caller's file-system identity: the
// fsuid, fsgid and supplementary groups of a local or remote caller, on
// one OS thread of a root daemon, so that the kernel checks every path
// the code touches as it would for the caller's own process. vprocd looks
// up a program and its directory this way; cfsd does every file
// operation of a client this way.
package fsident

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Cred is a caller's identity.
type Cred struct {
	UID, GID uint32
	Groups   []uint32
}

// Do runs f with the file-system identity of c: on an OS thread of
// its own whose fsuid, fsgid and supplementary groups are c's, so that the
// kernel checks every path f touches as it would for c's own process
// (going from fsuid 0 to c's drops root's file capabilities, such as
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, from that thread). What f
// learns is then no more than c could learn itself: a daemon never
// looks into a directory for a caller who may not.
//
// Linux keeps credentials per thread; golang.org/x/sys/unix makes these
// calls on the calling thread only, and the Go runtime starts no thread
// from a locked one (it hands that to its template thread), so no other
// goroutine ever runs with c's identity. A thread whose identity cannot be
// restored is left locked and so ends with its goroutine.
//
// A process that is not root already is c (its caller checked that), and
// for a root caller of group 0 root's view is the caller's: both run f as
// they are. A root caller of another group (or with other groups) gets
// its fsgid and groups, keeping fsuid 0 and with it root's capabilities,
// so that the files it makes have its group.
func Do(c Cred, f func()) error {
	if os.Geteuid() != 0 || (c.UID == 0 && c.GID == 0 && onlyRoot(c.Groups)) {
		f()
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restore, err := becomeFS(c)
		if err != nil {
			if restore() == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		f()
		if restore() == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	return <-errc
}

// onlyRoot says whether groups hold no group but 0.
func onlyRoot(groups []uint32) bool {
	for _, g := range groups {
		if g != 0 {
			return false
		}
	}
	return true
}

// becomeFS gives the calling (locked) thread c's file-system identity and
// returns how to give it back root's; it undoes what it did on failure
// only through restore.
func becomeFS(c Cred) (restore func() error, err error) {
	groups, err := unix.Getgroups()
	if err != nil {
		return func() error { return nil }, fmt.Errorf("fsident: read groups: %w", err)
	}
	fsgid := os.Getegid()
	restore = func() error {
		_ = unix.Setfsuid(0)
		_ = unix.Setfsgid(fsgid)
		if err := unix.Setgroups(groups); err != nil {
			return err
		}
		if uid, _ := unix.SetfsuidRetUid(-1); uid != 0 {
			return fmt.Errorf("fsident: fsuid is %d, not 0", uid)
		}
		if gid, _ := unix.SetfsgidRetGid(-1); gid != fsgid {
			return fmt.Errorf("fsident: fsgid is %d, not %d", gid, fsgid)
		}
		return nil
	}
	want := make([]int, len(c.Groups))
	for i, g := range c.Groups {
		want[i] = int(g)
	}
	if err := unix.Setgroups(want); err != nil {
		return restore, fmt.Errorf("fsident: take the groups of uid %d: %w", c.UID, err)
	}
	// setfsuid and setfsgid return the previous value, never an error:
	// read them back (-1 changes nothing) to know they took.
	_ = unix.Setfsgid(int(c.GID))
	if gid, _ := unix.SetfsgidRetGid(-1); gid != int(c.GID) {
		return restore, fmt.Errorf("fsident: take fsgid %d: it is %d", c.GID, gid)
	}
	_ = unix.Setfsuid(int(c.UID))
	if uid, _ := unix.SetfsuidRetUid(-1); uid != int(c.UID) {
		return restore, fmt.Errorf("fsident: take fsuid %d: it is %d", c.UID, uid)
	}
	return restore, nil
}
