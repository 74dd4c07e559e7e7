package node

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// TestWireEnums checks every value of every proto enum that dlmd converts
// to a core type by a cast: each non-zero proto value is a valid core value
// of the same name and converts back to itself, zero is no core value, and
// every valid core value has a proto value. Adding a value on one side only
// fails here.
func TestWireEnums(t *testing.T) {
	effectNames := map[lockspace.EffectKind]string{
		lockspace.Granted: "GRANTED", lockspace.Refused: "REFUSED", lockspace.Blocking: "BLOCKING",
	}
	tests := []struct {
		enum   protoreflect.EnumDescriptor
		prefix string
		// core converts a proto number to the core: its name ("" when it
		// is not a valid core value) and the number converted back.
		core func(n int32) (name string, back int32)
	}{
		{dlmv1.Mode(0).Descriptor(), "MODE_", func(n int32) (string, int32) {
			m := mode(dlmv1.Mode(n))
			if !m.Valid() {
				return "", int32(pmode(m))
			}
			return m.String(), int32(pmode(m))
		}},
		{dlmv1.LockState(0).Descriptor(), "LOCK_STATE_", func(n int32) (string, int32) {
			s := lockState(dlmv1.LockState(n))
			name := strings.ToUpper(s.String())
			if strings.HasPrefix(s.String(), "LockState(") {
				name = ""
			}
			return name, int32(plockState(s))
		}},
		{dlmpeerv1.EffectKind(0).Descriptor(), "EFFECT_KIND_", func(n int32) (string, int32) {
			k := effectKind(dlmpeerv1.EffectKind(n))
			return effectNames[k], int32(peffectKind(k))
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.enum.Name()), func(t *testing.T) {
			vals := tt.enum.Values()
			for i := range vals.Len() {
				v := vals.Get(i)
				name, back := tt.core(int32(v.Number()))
				if back != int32(v.Number()) {
					t.Errorf("%s (%d) converts back to %d", v.Name(), v.Number(), back)
				}
				if v.Number() == 0 {
					if name != "" {
						t.Errorf("%s (0) is the core value %s", v.Name(), name)
					}
					continue
				}
				if want := strings.TrimPrefix(string(v.Name()), tt.prefix); name != want {
					t.Errorf("%s (%d) is the core value %q, want %q", v.Name(), v.Number(), name, want)
				}
			}
			// Every valid core value (the core types are uint8) has a
			// proto value.
			for n := range int32(256) {
				if name, _ := tt.core(n); name != "" && vals.ByNumber(protoreflect.EnumNumber(n)) == nil {
					t.Errorf("core value %s (%d) has no %s value", name, n, tt.enum.Name())
				}
			}
		})
	}
}

// TestWireStatuses checks the status <-> error table against every Status
// value: OK is nil, INTERNAL is no sentinel, every other status is a
// sentinel of its own that maps back to it, and every sentinel of the core
// a master can send has a status.
func TestWireStatuses(t *testing.T) {
	vals := dlmv1.Status(0).Descriptor().Values()
	seen := map[error]dlmv1.Status{}
	for i := range vals.Len() {
		st := dlmv1.Status(vals.Get(i).Number())
		err := ErrorOf(st, "")
		switch st {
		case dlmv1.Status_STATUS_OK:
			if err != nil {
				t.Errorf("%s is the error %v", st, err)
			}
			continue
		case dlmv1.Status_STATUS_INTERNAL:
			if StatusOf(err) != st {
				t.Errorf("%s is the error %v, which maps to %s", st, err, StatusOf(err))
			}
			continue
		}
		if prev, ok := seen[err]; ok {
			t.Errorf("%s and %s are both the error %v", prev, st, err)
		}
		seen[err] = st
		if got := StatusOf(err); got != st {
			t.Errorf("%s is the error %v, which maps back to %s", st, err, got)
		}
		if got := StatusOf(errWrap(err)); got != st {
			t.Errorf("%s wrapped maps to %s", st, got)
		}
	}
	sentinels := []error{
		lockspace.ErrWouldBlock, lockspace.ErrTimeout, lockspace.ErrDeadlock, lockspace.ErrCancelled,
		lockspace.ErrAccess, lockspace.ErrNameTooLong, lockspace.ErrInvalid, lockspace.ErrUnknownLock,
		lockspace.ErrExists, lockspace.ErrBusy, lockspace.ErrNotPending, ErrRetry, ErrLimit,
	}
	for _, err := range sentinels {
		if _, ok := seen[err]; !ok {
			t.Errorf("%v has no status of its own", err)
		}
	}
	if len(seen) != len(sentinels) {
		t.Errorf("%d statuses map to sentinels, %d sentinels listed here", len(seen), len(sentinels))
	}
}

func errWrap(err error) error { return fmt.Errorf("context: %w", err) }
