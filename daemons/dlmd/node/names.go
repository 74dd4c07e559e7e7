package node

import (
	"fmt"
	"regexp"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
)

// SystemPrefix starts the names of the system's own lockspaces (those of
// the cluster daemons): root only.
const SystemPrefix = "openssi."

var lockspaceRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// storedRE is a lockspace name as the nodes know it: a client's name, or
// a user's own lockspace (UserLockspace).
var storedRE = regexp.MustCompile(`^(~[0-9]{1,10}\.)?[A-Za-z0-9_.-]{1,64}$`)

// UserLockspace is the name the nodes know uid's own lockspace name by:
// "~<uid>.<name>". A client cannot write it ('~' is not in a lockspace
// name), so no other user can take or block it.
func UserLockspace(uid uint32, name string) string { return fmt.Sprintf("~%d.%s", uid, name) }

// ValidStoredLockspace checks a lockspace name as peers send it: a
// client's name, or one UserLockspace makes.
func ValidStoredLockspace(name string) error {
	if !storedRE.MatchString(name) {
		return fmt.Errorf("dlm: lockspace name %q: want 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-', after an optional ~<uid>.: %w", name, lockspace.ErrInvalid)
	}
	return nil
}

// ValidLockspace checks a lockspace name: 1 to 64 of A-Z a-z 0-9 _ . -.
func ValidLockspace(name string) error {
	if !lockspaceRE.MatchString(name) {
		return fmt.Errorf("dlm: lockspace name %q: want 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-': %w", name, lockspace.ErrInvalid)
	}
	return nil
}
