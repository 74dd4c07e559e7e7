package server

import (
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// TestMovedOrigin: a program that moved keeps the origin its move says
// (one its first node named by its pid there: the cpid names that node),
// else the node its cpid names; its group only when a valid cpid.
func TestMovedOrigin(t *testing.T) {
	named := cpid.MustMake(2, 4242) // named on node 2, its first node
	for _, tc := range []struct {
		name string
		pr   *vprocpeerv1.MovedProgram
		want execOrigin
	}{
		{"an older source: the cpid's node", &vprocpeerv1.MovedProgram{Uid: 1000, Tty: true},
			execOrigin{node: 2, tty: true, uid: 1000, cpid: named}},
		{"the origin the move carries", &vprocpeerv1.MovedProgram{Uid: 1000, Origin: 1, Cpgid: int64(cpid.MustMake(1, 77))},
			execOrigin{node: 1, uid: 1000, cpid: named, cpgid: cpid.MustMake(1, 77)}},
		{"a group that is no cpid is none", &vprocpeerv1.MovedProgram{Origin: 1, Cpgid: -5},
			execOrigin{node: 1, cpid: named}},
	} {
		if got := movedOrigin(named, tc.pr); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
