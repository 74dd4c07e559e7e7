package access

import (
	"errors"
	"syscall"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

var c = cpid.MustMake(3, 77)

func TestSignal(t *testing.T) {
	for _, tc := range []struct {
		caller, owner uint32
		err           string
	}{
		{0, 0, ""},
		{0, 1000, ""},
		{1000, 1000, ""},
		{1000, 1001, "access: uid 1000 may not signal process 12582989 of uid 1001 (only its owner or root may): operation not permitted"},
		{1000, 0, "access: uid 1000 may not signal process 12582989 of uid 0 (only its owner or root may): operation not permitted"},
	} {
		err := Signal(tc.caller, tc.owner, c)
		if tc.err == "" {
			if err != nil {
				t.Errorf("Signal(%d, %d) = %v", tc.caller, tc.owner, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.err || !errors.Is(err, ErrPermission) || !errors.Is(err, syscall.EPERM) {
			t.Errorf("Signal(%d, %d) = %v; want %s", tc.caller, tc.owner, err, tc.err)
		}
	}
}

func TestRenice(t *testing.T) {
	for _, tc := range []struct {
		caller, owner uint32
		cur, want     int
		err           string
		is            error
	}{
		{0, 1000, 0, -20, "", nil},
		{0, 0, 19, -5, "", nil},
		{1000, 1000, 0, 10, "", nil},
		{1000, 1000, 5, 5, "", nil},
		{1000, 1000, 5, 4, "access: uid 1000 may not lower the nice value of process 12582989 from 5 to 4 (only root may raise a priority): operation not permitted", ErrPermission},
		{1000, 1001, 0, 10, "access: uid 1000 may not renice process 12582989 of uid 1001 (only its owner or root may): operation not permitted", ErrPermission},
		{0, 1000, 0, 20, "access: nice value 20 is out of range -20..19: nice value out of range", ErrNice},
		{1000, 1000, 0, -21, "access: nice value -21 is out of range -20..19: nice value out of range", ErrNice},
	} {
		err := Renice(tc.caller, tc.owner, c, tc.cur, tc.want)
		if tc.err == "" {
			if err != nil {
				t.Errorf("Renice(%d, %d, %d->%d) = %v", tc.caller, tc.owner, tc.cur, tc.want, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.err || !errors.Is(err, tc.is) {
			t.Errorf("Renice(%d, %d, %d->%d) = %v; want %s", tc.caller, tc.owner, tc.cur, tc.want, err, tc.err)
		}
	}
}

func TestMigrate(t *testing.T) {
	for _, tc := range []struct {
		caller, owner uint32
		err           string
	}{
		{0, 1000, ""},
		{1000, 1000, ""},
		{1000, 1001, "access: uid 1000 may not move process 12582989 of uid 1001 (only its owner or root may): operation not permitted"},
		{1000, 0, "access: uid 1000 may not move process 12582989 of uid 0 (only its owner or root may): operation not permitted"},
	} {
		err := Migrate(tc.caller, tc.owner, c)
		if tc.err == "" {
			if err != nil {
				t.Errorf("Migrate(%d, %d) = %v", tc.caller, tc.owner, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.err || !errors.Is(err, ErrPermission) {
			t.Errorf("Migrate(%d, %d) = %v; want %s", tc.caller, tc.owner, err, tc.err)
		}
	}
}
