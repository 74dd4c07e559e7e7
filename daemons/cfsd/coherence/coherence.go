// Package coherence is cfsd's cache coherence for one inode on one node,
// pure: which dlmd lock mode allows which cached state ([Allowed]), what a
// node must do before its lock may go to another node that asked for a
// conflicting mode ([OnBlocking]), and the per-inode machine that drives
// both ([Inode]): a local operation that needs more than the lock held
// waits for a conversion, a blocking callback waits for the operations in
// progress, then writes back, invalidates and converts down. It reads no
// clock, starts no goroutine and calls neither dlmd nor the kernel: the
// shell carries out the [Action]s it returns and reports back.
//
// # Lock modes and the cache
//
// Every node caches an inode under one dlmd lock on it (the modes and
// their compatibility are dlmd's, package lockspace):
//
//	mode        the kernel may hold of the inode
//	none, NL    nothing (NL keeps the lock's value block alive)
//	CR          nothing: a reader that asks the server every time
//	CW          nothing: writers that write through (direct I/O)
//	PR          attributes and clean data pages
//	PW, EX      attributes, clean and dirty data pages
//
// A local read (attributes, data, a directory) needs PR; a local write
// (data, attributes, a name in a directory) needs EX. cfsd asks for no
// other mode; the others are allowed what their access permits, so that a
// lock another tool takes on the same resource is never cached wrongly.
//
// Since PR is compatible only with NL, CR and PR, and EX with NL alone,
// dirty data is only ever cached where no other node caches anything of
// the inode, and clean data only where no node can write: once every
// callback is served, every node's cache is what the server holds, or
// the one writer's.
//
// # Callbacks
//
// When another node waits for mode want, the holder must convert to a
// mode compatible with it: the strongest of PR and NL that is, not above
// what it holds. Before it converts it writes back its dirty data (and
// attributes) and drops from the kernel's cache what the new mode does
// not allow. A callback waits for the operations in progress under the
// lock, and operations that come meanwhile wait for the callback, so a
// busy node cannot keep a lock from a waiting one.
package coherence

import (
	"fmt"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
)

// Mode is a dlmd lock mode (0: no lock).
type Mode = lockspace.Mode

// The modes cfsd uses.
const (
	NL = lockspace.NL
	PR = lockspace.PR
	EX = lockspace.EX
)

// Cache is what the kernel may hold of an inode on a node: a set.
type Cache uint8

const (
	// Attrs: its attributes (size, times, mode, owner).
	Attrs Cache = 1 << iota
	// Clean: data pages (or directory entries) as the server has them.
	Clean
	// Dirty: data pages written on this node, not yet on the server.
	Dirty
)

// String lists the set: "attrs+clean", "-" for none.
func (c Cache) String() string {
	s := ""
	for _, x := range []struct {
		c    Cache
		name string
	}{{Attrs, "attrs"}, {Clean, "clean"}, {Dirty, "dirty"}} {
		if c&x.c != 0 {
			if s != "" {
				s += "+"
			}
			s += x.name
		}
	}
	if s == "" {
		return "-"
	}
	return s
}

// Allowed is what the kernel may cache of an inode under a lock of mode m
// (0: no lock): see the package documentation.
func Allowed(m Mode) Cache {
	switch m {
	case lockspace.PR:
		return Attrs | Clean
	case lockspace.PW, lockspace.EX:
		return Attrs | Clean | Dirty
	}
	return 0
}

// Access is what a local operation does to an inode.
type Access uint8

const (
	// Read reads its attributes or data (or lists a directory).
	Read Access = iota + 1
	// Write changes its data or attributes (or a directory's names).
	Write
)

// Needs is the mode an access needs: PR to read, EX to write.
func Needs(a Access) Mode {
	if a == Write {
		return EX
	}
	return PR
}

// Release is what a holder must do before its lock may go to another
// node waiting for a conflicting mode.
type Release struct {
	// WriteBack: write its dirty data and attributes to the server first.
	WriteBack bool
	// Invalidate is what it must drop from the kernel's cache (FUSE's
	// inode invalidation) before converting.
	Invalidate Cache
	// To is the mode to convert to; equal to the mode held when the two
	// are compatible already (nothing to do).
	To Mode
}

// OnBlocking is what a node holding mode held, with cache c, must do for
// another that waits for mode want: convert to the strongest of PR and NL
// that is compatible with want and not above held, writing back dirty
// data first (its writes must reach the server before anyone reads) and
// invalidating what the new mode does not allow.
func OnBlocking(held Mode, c Cache, want Mode) Release {
	if !held.Valid() || lockspace.Compatible(held, want) {
		return Release{To: held}
	}
	to := NL
	if held.Covers(PR) && lockspace.Compatible(PR, want) {
		to = PR
	}
	wb := c&Dirty != 0
	if wb {
		c = c&^Dirty | Clean // what the write back leaves
	}
	return Release{WriteBack: wb, Invalidate: c &^ Allowed(to), To: to}
}

// ActionKind says what an Action asks of the shell.
type ActionKind uint8

const (
	// Request: ask dlmd for the lock in Mode (a new lock, or a
	// conversion up); answer with Granted, or Refused (a conversion
	// deadlock, a timeout).
	Request ActionKind = iota + 1
	// Run: let operation Op go on (it ends with End).
	Run
	// WriteBack: write the inode's dirty data and attributes to the
	// server; answer with WrittenBack(Op), Op numbering the write backs.
	WriteBack
	// Invalidate: drop Cache from the kernel's cache of the inode.
	Invalidate
	// Convert: convert the lock down to Mode (a callback served). No
	// answer: the lock manager's report of it is not the Inode's.
	Convert
	// Cancel: give the outstanding Request up (a callback waits for the
	// lock it would convert); answer with Cancelled, or Granted if the
	// grant came first.
	Cancel
)

// Action is one thing for the shell to do, in order.
type Action struct {
	Kind  ActionKind
	Mode  Mode
	Op    uint64
	Cache Cache
}

func (a Action) String() string {
	switch a.Kind {
	case Request:
		return "request " + a.Mode.String()
	case Run:
		return fmt.Sprintf("run %d", a.Op)
	case WriteBack:
		return fmt.Sprintf("write back %d", a.Op)
	case Invalidate:
		return "invalidate " + a.Cache.String()
	case Convert:
		return "convert " + a.Mode.String()
	case Cancel:
		return "cancel"
	}
	return fmt.Sprintf("Action(%d)", a.Kind)
}
