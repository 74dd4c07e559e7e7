package dlm

import (
	"errors"
	"strings"
	"testing"

	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// TestWireEnums checks the library's casts and status table against every
// value of the wire's enums, from their descriptors: a value added to the
// proto, or a mode added to the library, fails here until both agree.
func TestWireEnums(t *testing.T) {
	modes := dlmv1.Mode(0).Descriptor().Values()
	for i := range modes.Len() {
		v := modes.Get(i)
		m := modeOf(dlmv1.Mode(v.Number()))
		if m.proto() != dlmv1.Mode(v.Number()) {
			t.Errorf("%s does not convert back to itself", v.Name())
		}
		want := strings.TrimPrefix(string(v.Name()), "MODE_")
		if v.Number() == 0 {
			want = "Mode(0)"
		}
		if m.String() != want {
			t.Errorf("%s (%d) is the mode %s, want %s", v.Name(), v.Number(), m, want)
		}
	}
	for m := range Mode(256) {
		if _, err := ParseMode(m.String()); err == nil && modes.ByNumber(m.proto().Number()) == nil {
			t.Errorf("mode %s has no wire value", m)
		}
	}

	// Statuses a client never sees: dlmd retries RETRY itself, EXISTS is
	// between dlmd's, INTERNAL carries dlmd's message.
	notSentinel := map[dlmv1.Status]bool{
		dlmv1.Status_STATUS_OK: true, dlmv1.Status_STATUS_RETRY: true,
		dlmv1.Status_STATUS_EXISTS: true, dlmv1.Status_STATUS_INTERNAL: true,
	}
	statuses := dlmv1.Status(0).Descriptor().Values()
	for i := range statuses.Len() {
		st := dlmv1.Status(statuses.Get(i).Number())
		err := errOf(st, "")
		_, sentinel := statusErr[st]
		switch {
		case st == dlmv1.Status_STATUS_OK:
			if err != nil {
				t.Errorf("%s is the error %v", st, err)
			}
		case notSentinel[st]:
			if sentinel || err == nil {
				t.Errorf("%s is the error %v", st, err)
			}
		case !sentinel:
			t.Errorf("%s has no sentinel error: add it to statusErr or to the statuses a client never sees", st)
		case !errors.Is(errOf(st, "detail"), statusErr[st]):
			t.Errorf("%s with a message is %v, not %v", st, errOf(st, "detail"), statusErr[st])
		}
	}
}
