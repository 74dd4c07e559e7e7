package node

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// ErrRetry is the error of a request a master could not take because it
// was recovering or no longer masters the resource; the requester sends it
// again after recovery.
var ErrRetry = errors.New("master recovering, retry")

var statusErrors = []struct {
	st  dlmv1.Status
	err error
}{
	{dlmv1.Status_STATUS_WOULD_BLOCK, lockspace.ErrWouldBlock},
	{dlmv1.Status_STATUS_TIMEOUT, lockspace.ErrTimeout},
	{dlmv1.Status_STATUS_DEADLOCK, lockspace.ErrDeadlock},
	{dlmv1.Status_STATUS_CANCELLED, lockspace.ErrCancelled},
	{dlmv1.Status_STATUS_ACCESS, lockspace.ErrAccess},
	{dlmv1.Status_STATUS_NAME_TOO_LONG, lockspace.ErrNameTooLong},
	{dlmv1.Status_STATUS_INVALID, lockspace.ErrInvalid},
	{dlmv1.Status_STATUS_UNKNOWN_LOCK, lockspace.ErrUnknownLock},
	{dlmv1.Status_STATUS_EXISTS, lockspace.ErrExists},
	{dlmv1.Status_STATUS_BUSY, lockspace.ErrBusy},
	{dlmv1.Status_STATUS_NOT_PENDING, lockspace.ErrNotPending},
	{dlmv1.Status_STATUS_RETRY, ErrRetry},
	{dlmv1.Status_STATUS_LIMIT, ErrLimit},
}

// StatusOf maps an error of the core to its wire status.
func StatusOf(err error) dlmv1.Status {
	if err == nil {
		return dlmv1.Status_STATUS_OK
	}
	for _, s := range statusErrors {
		if errors.Is(err, s.err) {
			return s.st
		}
	}
	return dlmv1.Status_STATUS_INTERNAL
}

// ErrorOf maps a wire status back to the core's sentinel error (nil for
// OK); an unknown status is an internal error carrying msg.
func ErrorOf(st dlmv1.Status, msg string) error {
	if st == dlmv1.Status_STATUS_OK {
		return nil
	}
	for _, s := range statusErrors {
		if s.st == st {
			return s.err
		}
	}
	if msg == "" {
		msg = st.String()
	}
	return errors.New("dlm: " + msg)
}

// WireMessage is the detail of err that a Reply, PeerReply or gRPC status
// carries next to its status: err's text without the package prefix and
// without the sentinel the status already names. The client library adds
// both back once ("dlm: lock x/r: permission denied: <detail>").
func WireMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "dlm: ")
	for _, s := range statusErrors {
		if errors.Is(err, s.err) {
			if msg == s.err.Error() {
				return ""
			}
			return strings.TrimSuffix(msg, ": "+s.err.Error())
		}
	}
	return msg
}

func lvbOf(b []byte) (v lockspace.LVB) {
	copy(v[:], b)
	return v
}

func cfgToProto(c lockspace.Config) *dlmpeerv1.LockspaceConfig {
	return &dlmpeerv1.LockspaceConfig{Uid: c.UID, Gid: c.GID, System: c.System, Mode: c.Mode}
}

func cfgFromProto(c *dlmpeerv1.LockspaceConfig) lockspace.Config {
	return lockspace.Config{UID: c.GetUid(), GID: c.GetGid(), System: c.GetSystem(), Mode: c.GetMode()}
}

func credToProto(c lockspace.Cred) *dlmpeerv1.Cred {
	return &dlmpeerv1.Cred{Uid: c.UID, Gid: c.GID, Groups: c.Groups}
}

func credFromProto(c *dlmpeerv1.Cred) lockspace.Cred {
	return lockspace.Cred{UID: c.GetUid(), GID: c.GetGid(), Groups: c.GetGroups()}
}

func durationOf(nanos int64) time.Duration { return time.Duration(max(nanos, 0)) }

// The wire enums carry the core's numbers, so these are casts; the test
// TestWireEnums checks, value by value from the proto descriptors, that
// both sides have the same values under the same names.

func mode(m dlmv1.Mode) lockspace.Mode { return lockspace.Mode(m) }

// ModeOf converts a client's mode, refusing one the lock table does not
// know (ErrInvalid).
func ModeOf(m dlmv1.Mode) (lockspace.Mode, error) {
	if md := mode(m); md.Valid() {
		return md, nil
	}
	return 0, fmt.Errorf("dlm: mode %d: want NL, CR, CW, PR, PW or EX: %w", int32(m), lockspace.ErrInvalid)
}

func pmode(m lockspace.Mode) dlmv1.Mode { return dlmv1.Mode(m) }

func lockState(s dlmv1.LockState) lockspace.LockState { return lockspace.LockState(s) }

func plockState(s lockspace.LockState) dlmv1.LockState { return dlmv1.LockState(s) }

func effectKind(k dlmpeerv1.EffectKind) lockspace.EffectKind { return lockspace.EffectKind(k) }

func peffectKind(k lockspace.EffectKind) dlmpeerv1.EffectKind { return dlmpeerv1.EffectKind(k) }
