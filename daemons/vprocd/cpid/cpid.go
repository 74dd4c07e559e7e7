package cpid

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

const (
	// PIDBits is how many low bits of a cpid hold the pid.
	PIDBits = 22
	// MaxPID is the largest pid part: Linux's PID_MAX_LIMIT on 64-bit
	// systems minus one.
	MaxPID = 1<<PIDBits - 1
	// MaxNode is the largest node number a cpid can hold.
	MaxNode = math.MaxInt32 >> PIDBits
	// Min is the smallest valid cpid (node 1, pid 1).
	Min = CPID(1<<PIDBits | 1)
)

// Errors that Make and Parse wrap, for errors.Is.
var (
	// ErrSyntax: the text is not a plain decimal number.
	ErrSyntax = errors.New("not a decimal number")
	// ErrRange: the number does not fit a positive int32.
	ErrRange = errors.New("out of range")
	// ErrNode: the node part is 0 (a bare local pid) or above MaxNode.
	ErrNode = errors.New("no valid node")
	// ErrPID: the pid part is 0 or above MaxPID.
	ErrPID = errors.New("no valid pid")
)

// CPID is a cluster PID. The zero value is no process.
type CPID int32

// Make returns the cpid of pid started on node.
func Make(node uint32, pid int32) (CPID, error) {
	if node == 0 || node > MaxNode {
		return 0, fmt.Errorf("cpid: node %d is out of range 1..%d: %w", node, MaxNode, ErrNode)
	}
	if pid < 1 || pid > MaxPID {
		return 0, fmt.Errorf("cpid: pid %d is out of range 1..%d: %w", pid, MaxPID, ErrPID)
	}
	return CPID(int32(node)<<PIDBits | pid), nil
}

// MustMake is Make for constants known to be valid (tests, tables); it
// panics on an error.
func MustMake(node uint32, pid int32) CPID {
	c, err := Make(node, pid)
	if err != nil {
		panic(err)
	}
	return c
}

// Node is the origin node: where the process was started, the node to ask
// where it runs (or, while that node is DOWN, its surrogate).
func (c CPID) Node() uint32 { return uint32(c) >> PIDBits }

// PID is the pid part: the pid of the process, or of the one standing for
// it, on its origin.
func (c CPID) PID() int32 { return int32(c) & MaxPID }

// Valid reports whether c has a node 1..MaxNode and a pid 1..MaxPID.
func (c CPID) Valid() bool { return c > 0 && c.Node() >= 1 && c.PID() >= 1 }

// String is c in decimal.
func (c CPID) String() string { return strconv.FormatInt(int64(c), 10) }

// Parse reads a cpid from its decimal text: digits only, no sign, no
// spaces, no leading zero. The errors say what is wrong in one line and
// wrap ErrSyntax, ErrRange, ErrNode or ErrPID.
func Parse(s string) (CPID, error) {
	switch {
	case s == "":
		return 0, fmt.Errorf("cpid: empty: %w", ErrSyntax)
	case s[0] == '-':
		return 0, fmt.Errorf("cpid: %q is negative (a process group -CPGID is not a process): %w", s, ErrRange)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("cpid: %q: %w", clip(s), ErrSyntax)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("cpid: %q has a leading zero: %w", clip(s), ErrSyntax)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > math.MaxInt32 {
		return 0, fmt.Errorf("cpid: %s is out of range (a cpid is at most %d): %w", clip(s), math.MaxInt32, ErrRange)
	}
	c := CPID(v)
	if c.Node() == 0 {
		return 0, fmt.Errorf("cpid: %s has node 0: a bare pid, not a cluster pid (node<<%d|pid, at least %d): %w", s, PIDBits, Min, ErrNode)
	}
	if c.PID() == 0 {
		return 0, fmt.Errorf("cpid: %s (node %d) has pid 0: %w", s, c.Node(), ErrPID)
	}
	return c, nil
}

// clip shortens text quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Target is what a signal is sent to: one process, or with Group the
// whole cluster process group whose cpgid is ID (kill -CPGID).
type Target struct {
	ID    CPID
	Group bool
}

// ParseTarget reads "CPID" or "-CPGID" as kill(1) reads a pid or a
// process group.
func ParseTarget(s string) (Target, error) {
	if len(s) > 1 && s[0] == '-' {
		c, err := Parse(s[1:])
		if err != nil {
			return Target{}, fmt.Errorf("%w (in the process group %q)", err, clip(s))
		}
		return Target{ID: c, Group: true}, nil
	}
	c, err := Parse(s)
	if err != nil {
		return Target{}, err
	}
	return Target{ID: c}, nil
}

// String is the target as kill takes it: "CPID" or "-CPGID".
func (t Target) String() string {
	if t.Group {
		return "-" + t.ID.String()
	}
	return t.ID.String()
}
