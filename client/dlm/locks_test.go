package dlm

import (
	"testing"

	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// TestWireNumbers checks the numeric casts between the wire enums and the
// package's Mode and State: each value has the same name on both sides.
func TestWireNumbers(t *testing.T) {
	for m := NL; m <= EX; m++ {
		if got := dlmv1.Mode(m).String(); got != "MODE_"+m.String() {
			t.Errorf("Mode %v is %s on the wire", m, got)
		}
	}
	for s := Granted; s <= Waiting; s++ {
		want := map[State]string{Granted: "LOCK_STATE_GRANTED", Converting: "LOCK_STATE_CONVERTING", Waiting: "LOCK_STATE_WAITING"}[s]
		if got := dlmv1.LockState(s).String(); got != want {
			t.Errorf("State %v is %s on the wire, want %s", s, got, want)
		}
	}
	if n := len(dlmv1.LockState_name); n != int(Waiting)+1 {
		t.Errorf("the wire has %d lock states, the package %d (plus unspecified)", n, Waiting)
	}
	if n := len(dlmv1.Mode_name); n != int(EX)+1 {
		t.Errorf("the wire has %d modes, the package %d (plus unspecified)", n, EX)
	}
}
