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

// ValidLockspace checks a lockspace name: 1 to 64 of A-Z a-z 0-9 _ . -.
func ValidLockspace(name string) error {
	if !lockspaceRE.MatchString(name) {
		return fmt.Errorf("dlm: lockspace name %q: want 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-': %w", name, lockspace.ErrInvalid)
	}
	return nil
}
