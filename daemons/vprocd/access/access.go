package access

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// Nice values, as setpriority(2) takes them.
const (
	MinNice = -20
	MaxNice = 19
)

// ErrPermission is what a refusal wraps; it is syscall.EPERM, so a shell
// maps it to the exit status it gives EPERM.
var ErrPermission error = syscall.EPERM

// ErrNice: a nice value outside MinNice..MaxNice.
var ErrNice = errors.New("nice value out of range")

// Signal returns nil when uid caller may signal a process of uid owner,
// else an error wrapping ErrPermission that names both.
func Signal(caller, owner uint32, c cpid.CPID) error {
	if caller == 0 || caller == owner {
		return nil
	}
	return fmt.Errorf("access: uid %d may not signal process %s of uid %d (only its owner or root may): %w", caller, c, owner, ErrPermission)
}

// Migrate returns nil when uid caller may move a process of uid owner to
// another node (`ssi migrate`): root any, any other user only its own, as
// for a signal.
func Migrate(caller, owner uint32, c cpid.CPID) error {
	if caller == 0 || caller == owner {
		return nil
	}
	return fmt.Errorf("access: uid %d may not move process %s of uid %d (only its owner or root may): %w", caller, c, owner, ErrPermission)
}

// Renice returns nil when uid caller may change the nice value of a
// process of uid owner from cur to want: root any, the owner only upward
// (want >= cur). want must be within MinNice..MaxNice.
func Renice(caller, owner uint32, c cpid.CPID, cur, want int) error {
	if want < MinNice || want > MaxNice {
		return fmt.Errorf("access: nice value %d is out of range %d..%d: %w", want, MinNice, MaxNice, ErrNice)
	}
	if caller == 0 {
		return nil
	}
	if caller != owner {
		return fmt.Errorf("access: uid %d may not renice process %s of uid %d (only its owner or root may): %w", caller, c, owner, ErrPermission)
	}
	if want < cur {
		return fmt.Errorf("access: uid %d may not lower the nice value of process %s from %d to %d (only root may raise a priority): %w", caller, c, cur, want, ErrPermission)
	}
	return nil
}
