package node

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestByteNamesWaitForEveryMember: a resource name that is not UTF-8 is
// refused (ErrInvalid, naming the node) while a member's dlmd has not
// said in its hello that it reads such names, as an older dlmd would fail
// to decode any message carrying one; UTF-8 names go on. Once the member
// says it (a new hello), the name is taken.
func TestByteNamesWaitForEveryMember(t *testing.T) {
	nw := newNetwork(t, 2, time.Second, 10*time.Second, nil)
	nw.run(200 * time.Millisecond)
	m1 := nw.nodes[1]
	n := m1.n
	in := m1.attached[2]
	if ok, _ := n.Attach(nw.now, 2, in.Inc, in.ID, FeatEffectInReply); !ok {
		t.Fatal("hello refused")
	}
	s := n.OpenSession(nw.now, 100, lockspace.Cred{UID: 1000, GID: 1000})
	lock := func(tag uint64, res string) string {
		nw.out.Reset()
		n.Lock(nw.now, s, tag, lockspace.Config{UID: 1000, GID: 1000}, &dlmv1.LockRequest{Lockspace: "ls", Resource: []byte(res), Mode: dlmv1.Mode_MODE_NL, CompletionInReply: true})
		nw.collect(m1)
		nw.stabilize(false)
		return nw.out.String()
	}
	bad := []byte("\xff\x00")
	const want = `dlm: resource name "\xff\x00" is not UTF-8, and node 2's dlmd has not said it reads such names (an older version, or not connected yet): use them once every node runs this version: invalid argument`
	if err := n.byteNamesErr(bad); !errors.Is(err, lockspace.ErrInvalid) || err.Error() != want {
		t.Fatalf("with node 2 older: %v\nwant %s", err, want)
	}
	if out := lock(1, string(bad)); !strings.Contains(out, "reply tag=1 invalid") {
		t.Fatalf("lock of a name that is not UTF-8 with node 2 older:\n%s", out)
	}
	if out := lock(2, "fine"); !strings.Contains(out, "reply tag=2 ok") {
		t.Fatalf("lock of a UTF-8 name with node 2 older:\n%s", out)
	}
	if ok, _ := n.Attach(nw.now, 2, in.Inc, in.ID, FeatEffectInReply|FeatByteNames); !ok {
		t.Fatal("hello refused")
	}
	if err := n.byteNamesErr(bad); err != nil {
		t.Fatalf("once every member reads them: %v", err)
	}
	if out := lock(3, string(bad)); !strings.Contains(out, "reply tag=3 ok") {
		t.Fatalf("lock of a name that is not UTF-8 once every member reads them:\n%s", out)
	}
}
