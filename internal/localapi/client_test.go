package localapi

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDaemonWrap(t *testing.T) {
	var notRunning, permission, refused, unavailable = errors.New("nr"), errors.New("perm"), errors.New("ref"), errors.New("unav")
	d := Daemon{Prefix: "x", Unit: "openssi-xd", Says: "xd:", NotRunning: notRunning, Permission: permission, Refused: refused, Unavailable: unavailable,
		RefusedToo: []codes.Code{codes.AlreadyExists}}
	for _, tc := range []struct {
		err  error
		is   error
		text string
	}{
		{nil, nil, ""},
		{errors.New("boom"), nil, "x: boom"},
		{status.Error(codes.PermissionDenied, "xd: root only"), permission, "xd: root only"},
		{status.Error(codes.Unauthenticated, "xd: who"), permission, "xd: who"},
		{status.Error(codes.InvalidArgument, "xd: bad"), refused, "xd: bad"},
		{status.Error(codes.NotFound, "xd: none"), refused, "xd: none"},
		{status.Error(codes.AlreadyExists, "xd: there"), refused, "xd: there"},
		{status.Error(codes.Aborted, "xd: raced"), nil, "x: xd: raced"},
		{status.Error(codes.Unavailable, "xd: consul down"), unavailable, "xd: consul down"},
		{status.Error(codes.Unavailable, "connection refused"), notRunning, "x: nr (/s): connection refused"},
		{status.Error(codes.Internal, "oops"), nil, "x: oops"},
	} {
		got := d.Wrap(tc.err, "/s")
		switch {
		case tc.err == nil:
			if got != nil {
				t.Errorf("Wrap(nil) = %v", got)
			}
			continue
		case got == nil || got.Error() != tc.text:
			t.Errorf("Wrap(%v) = %v, want %q", tc.err, got, tc.text)
		case tc.is != nil && !errors.Is(got, tc.is):
			t.Errorf("Wrap(%v) = %v, not %v", tc.err, got, tc.is)
		}
	}
}
