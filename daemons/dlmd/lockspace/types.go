package lockspace

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Limits of names and value blocks.
const (
	// MaxResourceName is the longest resource name, in bytes.
	MaxResourceName = 64
	// MaxLockspaceName is the longest lockspace name, in bytes.
	MaxLockspaceName = 64
	// MaxUserPrefix is the longest prefix ("~4294967295.") that makes a
	// user's own lockspace's name.
	MaxUserPrefix = 12
	// LVBLen is the size of a lock value block.
	LVBLen = 32
)

// Sentinel errors. They carry no package prefix: synchronous errors of the
// API wrap them with the prefix and context ("dlm: lockspace ...: permission
// denied"); the Err of a Refused effect is one of ErrWouldBlock, ErrTimeout,
// ErrDeadlock or ErrCancelled, unwrapped, for the shell to report.
var (
	// ErrWouldBlock: a NOQUEUE request could not be granted at once
	// (VMS SS$_NOTQUEUED, fs/dlm -EAGAIN).
	ErrWouldBlock = errors.New("request would block")
	// ErrTimeout: the request waited past its timeout.
	ErrTimeout = errors.New("request timed out")
	// ErrDeadlock: the request was chosen as a deadlock victim.
	ErrDeadlock = errors.New("deadlock")
	// ErrCancelled: the request was cancelled (Cancel, Unlock of a
	// lock with a pending request).
	ErrCancelled = errors.New("request cancelled")
	// ErrAccess: the caller may not use the lockspace.
	ErrAccess = errors.New("permission denied")
	// ErrNameTooLong: a resource or lockspace name is too long.
	ErrNameTooLong = errors.New("name too long")
	// ErrInvalid: a malformed request (bad mode, flag combination, name).
	ErrInvalid = errors.New("invalid argument")
	// ErrUnknownLock: no lock with that owner and id.
	ErrUnknownLock = errors.New("no such lock")
	// ErrExists: the owner already has a lock with that id, or the
	// resource to rebuild already has locks here.
	ErrExists = errors.New("already exists")
	// ErrBusy: the lock already has a request pending (convert), or is an
	// orphan and cannot be converted.
	ErrBusy = errors.New("lock busy")
	// ErrNotPending: cancel of a lock that has no request pending.
	ErrNotPending = errors.New("no request pending")
	// ErrIncompatibleCopies: copies given to Rebuild hold incompatible
	// granted modes, which no correct master ever granted.
	ErrIncompatibleCopies = errors.New("incompatible granted locks in copies")
)

// NodeID is a cluster node number (as clmsd assigns them).
type NodeID uint32

// Owner identifies who holds locks: a process (or any client-chosen
// transaction id) on a node. Deadlock detection works on owners.
type Owner struct {
	Node   NodeID
	Client uint64
}

// String renders the owner as node.client.
func (o Owner) String() string { return fmt.Sprintf("%d.%d", o.Node, o.Client) }

// Less orders owners by node, then client.
func (o Owner) Less(p Owner) bool {
	if o.Node != p.Node {
		return o.Node < p.Node
	}
	return o.Client < p.Client
}

// LockID names a lock among its owner's locks. The owner's node chooses it
// (a per-node counter is enough), so the id survives remastering.
type LockID uint64

// Key identifies a lock in a lockspace.
type Key struct {
	Owner Owner
	ID    LockID
}

// String renders the key as node.client#id.
func (k Key) String() string { return fmt.Sprintf("%v#%d", k.Owner, k.ID) }

// Less orders keys by owner, then id.
func (k Key) Less(l Key) bool {
	if k.Owner != l.Owner {
		return k.Owner.Less(l.Owner)
	}
	return k.ID < l.ID
}

// Flags modify a request.
type Flags uint16

// The request flags.
const (
	// NoQueue: refuse with ErrWouldBlock instead of waiting.
	NoQueue Flags = 1 << iota
	// ValBlk: read the lock value block on a grant in PR, PW or EX; write
	// Request.LVB on a down-conversion or unlock from PW or EX.
	ValBlk
	// QueCvt: queue an up-conversion behind the conversions already
	// waiting, even if it is compatible with the granted locks (VMS
	// LCK$M_QUECVT). Only for Convert.
	QueCvt
	// Persistent: the lock outlives its owner; on OwnerExit it stays
	// granted as an orphan. Only for Lock.
	Persistent
	// Expedite: grant a new NL request at once, ahead of waiting requests
	// (NL conflicts with nothing). Only for Lock in mode NL.
	Expedite
	// InvalidateLVB: on a down-conversion or unlock from PW or EX, mark the
	// value block not valid (VMS LCK$M_INVVALBLK). Wins over ValBlk.
	InvalidateLVB
)

var flagNames = []string{"NOQUEUE", "VALBLK", "QUECVT", "PERSISTENT", "EXPEDITE", "INVVALBLK"}

const allFlags = NoQueue | ValBlk | QueCvt | Persistent | Expedite | InvalidateLVB

// String renders the flags as NOQUEUE|VALBLK...
func (f Flags) String() string {
	var parts []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if rest := f &^ allFlags; rest != 0 {
		parts = append(parts, fmt.Sprintf("0x%x", uint16(rest)))
	}
	return strings.Join(parts, "|")
}

// LVB is a lock value block.
type LVB [LVBLen]byte

// Cred is the caller's identity, from SO_PEERCRED of the local socket (and
// passed along by the requesting node's dlmd).
type Cred struct {
	UID    uint32
	GID    uint32
	Groups []uint32
}

// Config describes a lockspace.
type Config struct {
	// UID and GID own the lockspace. Root always may use it.
	UID, GID uint32
	// Mode holds permission bits as a file's, for owner, group and other
	// (0o777): the class is chosen as for a file (owner if the caller's
	// uid is UID, else group if its gid or a supplementary group is GID,
	// else other); in it, w (2) lets the caller take locks in any mode and
	// purge its own orphans, r (4) lets it see the lockspace's locks in a
	// listing; x means nothing. 0 is DefaultMode.
	Mode uint32
	// System lockspaces are for root only (cluster daemons' own locks).
	System bool
}

// DefaultMode is the mode of a lockspace created on first use, and of
// one whose record has no mode: owner and group may use it.
const DefaultMode = 0o660

// Permission bits of Config.Mode within a class.
const (
	PermRead  = 4
	PermWrite = 2
)

// perm returns the bits of cred's class.
func (c Config) perm(cred Cred) uint32 {
	m := c.Mode & 0o777
	if c.Mode == 0 {
		m = DefaultMode
	}
	switch {
	case cred.UID == c.UID:
		return m >> 6 & 7
	case cred.inGroup(c.GID):
		return m >> 3 & 7
	default:
		return m & 7
	}
}

// Can reports whether cred has permission want (PermRead, PermWrite) on
// a lockspace with this config.
func (c Config) Can(cred Cred, want uint32) bool {
	if cred.UID == 0 {
		return true
	}
	if c.System {
		return false
	}
	return c.perm(cred)&want == want
}

// Allows reports whether cred may use (take locks in) a lockspace with
// this config.
func (c Config) Allows(cred Cred) bool { return c.Can(cred, PermWrite) }

// CheckAccess returns nil when Allows(cred), and otherwise an error that
// says why, wrapping ErrAccess.
func (c Config) CheckAccess(lockspace string, cred Cred) error {
	switch {
	case c.Allows(cred):
		return nil
	case c.System:
		return fmt.Errorf("dlm: lockspace %q is the system's, root only: caller is uid %d: %w", lockspace, cred.UID, ErrAccess)
	case c.Mode != 0 && c.Mode != DefaultMode:
		return fmt.Errorf("dlm: lockspace %q belongs to uid %d gid %d mode %04o, caller is uid %d: %w", lockspace, c.UID, c.GID, c.Mode, cred.UID, ErrAccess)
	default:
		return fmt.Errorf("dlm: lockspace %q belongs to uid %d gid %d, caller is uid %d: %w", lockspace, c.UID, c.GID, cred.UID, ErrAccess)
	}
}

// inGroup reports whether gid is the caller's gid or a supplementary group.
func (c Cred) inGroup(gid uint32) bool {
	return c.GID == gid || slices.Contains(c.Groups, gid)
}

// Request is a new lock (Lock) or a conversion of an existing one (Convert).
type Request struct {
	Owner Owner
	ID    LockID
	// Resource is the resource name (1 to MaxResourceName bytes). Convert
	// ignores it when empty and otherwise checks it.
	Resource string
	Mode     Mode
	Flags    Flags
	// Timeout, if positive, bounds how long the request may wait: the
	// first Tick at or after now+Timeout refuses it with ErrTimeout.
	Timeout time.Duration
	// LVB is the value written by a down-conversion from PW or EX with
	// ValBlk.
	LVB LVB
}

// EffectKind is what the shell must deliver.
type EffectKind uint8

// The effects.
const (
	// Granted: the lock's pending request (new lock or conversion) is
	// granted in Mode: deliver the completion AST.
	Granted EffectKind = iota + 1
	// Refused: the pending request ended without a grant, for Err. If Held,
	// the lock still exists, granted in Mode (a failed conversion);
	// otherwise the lock is gone. Deliver the completion AST with Err.
	Refused
	// Blocking: the lock blocks a request for Mode: deliver the blocking
	// AST (BAST) so the holder can down-convert or unlock.
	Blocking
)

var effectNames = [...]string{Granted: "grant", Refused: "refuse", Blocking: "bast"}

// String returns grant, refuse or bast.
func (k EffectKind) String() string {
	if k >= Granted && k <= Blocking {
		return effectNames[k]
	}
	return fmt.Sprintf("EffectKind(%d)", int(k))
}

// Effect is one thing the shell must do, addressed to the lock's owner.
type Effect struct {
	Kind     EffectKind
	Resource string
	Key      Key
	// Mode: the granted mode (Granted), the mode still held (Refused with
	// Held), the mode a blocked request wants (Blocking).
	Mode Mode
	Held bool
	Err  error
	// Seq is the sequence number of the request this effect completes.
	Seq uint64
	// HasLVB: a Granted effect carries the value block (ValBlk and a mode
	// of PR or stronger). LVBValid false means it is not valid (a holder
	// in PW or EX died) until someone writes it.
	HasLVB   bool
	LVB      LVB
	LVBValid bool
	// Token is the fencing token of a Granted effect in PW or EX (0 in
	// weaker modes): each grant of PW or EX on a resource, new or by an
	// up-conversion, takes the next number of the resource's counter; a
	// down-conversion from EX to PW keeps its token. The shell sets the
	// counter's floor when a resource starts being mastered here
	// (RaiseToken, or the copies' tokens in Rebuild) so that tokens keep
	// growing across masters.
	Token uint64
}

// String renders the effect compactly, e.g. "grant 1.2#3 res EX" or
// "refuse 1.2#4 res PR (dlm: request timed out) held".
func (e Effect) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %v %s", e.Kind, e.Key, e.Resource)
	if e.Kind != Refused || e.Held {
		fmt.Fprintf(&b, " %v", e.Mode)
	}
	switch e.Kind {
	case Refused:
		if e.Err != nil {
			fmt.Fprintf(&b, " (%v)", e.Err)
		}
		if e.Held {
			b.WriteString(" held")
		}
	case Granted:
		if e.Token != 0 {
			fmt.Fprintf(&b, " token=%d", e.Token)
		}
		if e.HasLVB {
			fmt.Fprintf(&b, " lvb=%q", strings.TrimRight(string(e.LVB[:]), "\x00"))
			if !e.LVBValid {
				b.WriteString(" invalid")
			}
		}
	}
	return b.String()
}
