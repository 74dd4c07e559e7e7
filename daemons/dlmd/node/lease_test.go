package node

import (
	"testing"

	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
)

// TestMaxLease: the cap on what peers say is the longest setting dlmdspec
// allows.
func TestMaxLease(t *testing.T) {
	if MaxLease != dlmdspec.MaxLease {
		t.Errorf("node.MaxLease = %v, dlmdspec.MaxLease = %v", MaxLease, dlmdspec.MaxLease)
	}
}
