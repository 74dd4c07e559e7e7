// Package execwire holds the frames of vprocd's exec socket: the stream
// of one exec (vproc.v1's ExecInput and ExecOutput messages) carried over
// a Unix stream socket of its own instead of a gRPC stream, so that a
// caller starts a program without gRPC's connection set-up. A connection
// carries one exec. Each frame is a 4-byte big-endian length of what
// follows, a kind byte and a protobuf message:
//
//   - KindInput, caller to vprocd: an ExecInput. The first frame is the
//     request (ExecInput.start) and is the only one that may carry
//     descriptors (SCM_RIGHTS): the caller's stdio files its
//     passed_stdio names, in order.
//   - KindOutput, vprocd to caller: an ExecOutput.
//   - KindStatus, vprocd to caller, last: the exec ended with an error,
//     a google.rpc.Status (what the gRPC call would have returned).
//
// vprocd ends the exec (its program killed, unless detached) when the
// caller closes the connection, as when a gRPC stream is cancelled.
//
// The package imports nothing but syscall (Passable, which files go with
// a request), so that ssi can start an exec in its first package
// initialiser, before the rest of the binary's.
package execwire

// Frame kinds.
const (
	KindInput  byte = 1
	KindOutput byte = 2
	KindStatus byte = 3
)

// HeaderSize is the length and kind bytes before a frame's message.
const HeaderSize = 5

// MaxMessage bounds a frame's message: gRPC's default bound on a message
// received (4 MiB), which the local gRPC API applies to the same
// messages.
const MaxMessage = 4 << 20

// MaxFiles is the most descriptors the first frame may carry (stdin,
// stdout, stderr).
const MaxFiles = 3

// Error is an error of this package.
type Error string

func (e Error) Error() string { return string(e) }

// Errors of ParseHeader.
const (
	ErrKind    Error = "execwire: unknown frame kind"
	ErrTooLong Error = "execwire: frame longer than execwire.MaxMessage"
	ErrEmpty   Error = "execwire: frame without a kind"
)

// AppendHeader appends the header of a frame of kind whose message is n
// bytes long.
func AppendHeader(b []byte, kind byte, n int) []byte {
	l := uint32(n + 1)
	return append(b, byte(l>>24), byte(l>>16), byte(l>>8), byte(l), kind)
}

// ParseHeader returns the kind and message length a header gives.
func ParseHeader(h [HeaderSize]byte) (kind byte, n int, err error) {
	l := uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])
	if l == 0 {
		return 0, 0, ErrEmpty
	}
	if l-1 > MaxMessage {
		return 0, 0, ErrTooLong
	}
	kind = h[4]
	if kind < KindInput || kind > KindStatus {
		return 0, 0, ErrKind
	}
	return kind, int(l - 1), nil
}

// SocketPath returns the exec socket of vprocd's socket path: the same
// path with "-exec" before its ".sock" (/run/openssi/vprocd-exec.sock).
func SocketPath(vprocdSocket string) string {
	const ext = ".sock"
	if n := len(vprocdSocket); n >= len(ext) && vprocdSocket[n-len(ext):] == ext {
		return vprocdSocket[:n-len(ext)] + "-exec" + ext
	}
	return vprocdSocket + "-exec"
}

// Start is an exec request as ssi exec sends it before its other packages
// are initialised: vproc.v1's ExecRequest with these fields set (the rest
// unset).
type Start struct {
	Node        uint32
	Argv, Env   []string
	Cwd         string
	PassedStdio uint32
}

// AppendStartFrame appends the first frame of an exec: the KindInput
// frame of ExecInput{start: s}, encoded by hand (protobuf's wire format)
// so that its encoder imports nothing.
func AppendStartFrame(b []byte, s Start) []byte {
	var req []byte
	if s.Node != 0 {
		req = appendVarintField(req, 1, uint64(s.Node))
	}
	for _, a := range s.Argv {
		req = appendBytesField(req, 2, a)
	}
	for _, e := range s.Env {
		req = appendBytesField(req, 3, e)
	}
	if s.Cwd != "" {
		req = appendBytesField(req, 4, s.Cwd)
	}
	if s.PassedStdio != 0 {
		req = appendVarintField(req, 9, uint64(s.PassedStdio))
	}
	// ExecInput.start is field 1.
	msg := appendVarint(appendVarint(nil, 1<<3|wireBytes), uint64(len(req)))
	msg = append(msg, req...)
	b = AppendHeader(b, KindInput, len(msg))
	return append(b, msg...)
}

// Protobuf wire types.
const (
	wireVarint = 0
	wireBytes  = 2
)

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendVarintField(b []byte, field int, v uint64) []byte {
	return appendVarint(appendVarint(b, uint64(field)<<3|wireVarint), v)
}

func appendBytesField(b []byte, field int, s string) []byte {
	b = appendVarint(appendVarint(b, uint64(field)<<3|wireBytes), uint64(len(s)))
	return append(b, s...)
}

// MergeEnv returns base with each K=V of sets in place of K's values, or
// added at the end (ssi exec -e); ok is false, naming the bad one, for a
// set that is no K=V (no '=', an empty K, a NUL).
func MergeEnv(base, sets []string) (env []string, bad string, ok bool) {
	env = append([]string(nil), base...)
	for _, kv := range sets {
		k, ok := envKey(kv)
		if !ok || k == "" || hasNUL(kv) {
			return nil, kv, false
		}
		found := false
		for i, o := range env {
			if ok, _ := envKey(o); ok == k {
				env[i], found = kv, true
			}
		}
		if !found {
			env = append(env, kv)
		}
	}
	return env, "", true
}

// envKey returns what comes before the first '=' of kv, and whether there
// is one.
func envKey(kv string) (string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], true
		}
	}
	return kv, false
}

func hasNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// Frame is a frame read: its kind and message.
type Frame struct {
	Kind byte
	Msg  []byte
}
