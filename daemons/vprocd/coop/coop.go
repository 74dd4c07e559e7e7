// Package coop is the wire protocol of cooperative checkpoint/restart:
// how vprocd asks a program that opted in for its state at the source of
// a migration, and hands that state to the same program started on the
// target. It is small on purpose, so that a program in any language can
// speak it; docs/cooperative-migration.md is its description for those
// who implement it, and client/vproc/coop its Go implementation.
//
// vprocd starts a registered program with OPENSSI_CHECKPOINT_SOCK naming
// a Unix stream socket it listens on (and, on a migration's target, with
// OPENSSI_RESTORE=1). The program connects and says Hello; everything
// after is frames:
//
//	length  uint32, big-endian: the bytes that follow (type + payload)
//	type    uint8
//	payload length-1 bytes
//
// This package encodes and decodes frames and checks their sizes (the
// state is bounded by Limits.State, 64 MiB by default); it opens no
// socket and reads no clock. Decode is fuzzed.
package coop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The environment a registered program is started with.
const (
	// EnvSocket names the Unix stream socket to connect to.
	EnvSocket = "OPENSSI_CHECKPOINT_SOCK"
	// EnvRestore is "1" when the program is started on a migration's
	// target: it gets its state (a State frame) instead of Start.
	EnvRestore = "OPENSSI_RESTORE"
)

// Magic and Version open the Hello payload.
const (
	Magic   = "OSSICOOP"
	Version = 1
)

// Type is a frame's type.
type Type uint8

const (
	// Hello (program → vprocd, first): Magic and the version, uint16
	// big-endian.
	Hello Type = 1
	// Start (vprocd → program): run from the beginning (no state).
	Start Type = 2
	// State carries the program's state: program → vprocd, the answer to
	// Checkpoint; vprocd → program, on the target, the state to restore.
	State Type = 3
	// Restored (program → vprocd, on the target): the state is restored;
	// the program waits for Resume before it does anything visible.
	Restored Type = 4
	// Resume (vprocd → program): go on. On the target, the migration
	// committed; at the source, it failed and the program continues.
	Resume Type = 5
	// Checkpoint (vprocd → program, at the source): stop, and answer
	// with State (then do nothing visible until Resume; if the migration
	// commits, vprocd ends the program) or Error.
	Checkpoint Type = 6
	// Error (either way): the checkpoint or restore failed, or the peer
	// broke the protocol; the payload says why in UTF-8 (at most
	// MaxError bytes). The sender closes the connection after it.
	Error Type = 7
)

var typeNames = map[Type]string{Hello: "hello", Start: "start", State: "state", Restored: "restored",
	Resume: "resume", Checkpoint: "checkpoint", Error: "error"}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Sizes.
const (
	// HeaderSize is the length prefix and the type.
	HeaderSize = 5
	// MaxError bounds an Error's text.
	MaxError = 4096
	// DefaultStateLimit is Limits.State's default: 64 MiB.
	DefaultStateLimit = 64 << 20
	helloSize         = len(Magic) + 2
)

// Limits bounds what a peer may send.
type Limits struct {
	// State bounds a State payload (vprocd.migrate.coop_state_limit);
	// zero means DefaultStateLimit.
	State int
}

func (l Limits) state() int {
	if l.State <= 0 {
		return DefaultStateLimit
	}
	return l.State
}

// Frame is one message.
type Frame struct {
	Type    Type
	Payload []byte
}

// Errors.
var (
	ErrShort    = errors.New("coop: incomplete frame")
	ErrTooLarge = errors.New("coop: frame too large")
	ErrType     = errors.New("coop: unknown frame type")
	ErrPayload  = errors.New("coop: malformed payload")
	ErrVersion  = errors.New("coop: unsupported version")
)

// check says whether a frame of type t may carry n payload bytes.
func check(t Type, n int, l Limits) error {
	switch t {
	case Hello:
		if n != helloSize {
			return fmt.Errorf("%w: hello of %d bytes", ErrPayload, n)
		}
	case Start, Restored, Resume, Checkpoint:
		if n != 0 {
			return fmt.Errorf("%w: %s with a payload", ErrPayload, t)
		}
	case State:
		if n > l.state() {
			return fmt.Errorf("%w: state of %d bytes (limit %d)", ErrTooLarge, n, l.state())
		}
	case Error:
		if n > MaxError {
			return fmt.Errorf("%w: error text of %d bytes", ErrTooLarge, n)
		}
	default:
		return fmt.Errorf("%w: %d", ErrType, uint8(t))
	}
	return nil
}

// Append encodes f after dst.
func Append(dst []byte, f Frame, l Limits) ([]byte, error) {
	if err := check(f.Type, len(f.Payload), l); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(f.Payload)))
	dst = append(dst, byte(f.Type))
	return append(dst, f.Payload...), nil
}

// Decode decodes the frame at the start of buf and says how many bytes it
// took. ErrShort means buf holds only part of a frame (read more); any
// other error means the peer broke the protocol. The payload aliases buf.
func Decode(buf []byte, l Limits) (Frame, int, error) {
	if len(buf) < 4 {
		return Frame{}, 0, ErrShort
	}
	n := binary.BigEndian.Uint32(buf)
	if n == 0 {
		return Frame{}, 0, fmt.Errorf("%w: empty frame", ErrPayload)
	}
	if len(buf) < HeaderSize {
		return Frame{}, 0, ErrShort
	}
	t := Type(buf[4])
	// Check the type and size before waiting for the payload: a peer
	// cannot make us wait for (or allocate) more than the limit.
	if err := check(t, int(n-1), l); err != nil {
		return Frame{}, 0, err
	}
	if uint64(len(buf)) < 4+uint64(n) {
		return Frame{}, 0, ErrShort
	}
	return Frame{Type: t, Payload: buf[HeaderSize : 4+n]}, int(4 + n), nil
}

// Read reads one frame from r.
func Read(r io.Reader, l Limits) (Frame, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 {
		return Frame{}, fmt.Errorf("%w: empty frame", ErrPayload)
	}
	if _, err := io.ReadFull(r, h[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	t := Type(h[4])
	if err := check(t, int(n-1), l); err != nil {
		return Frame{}, err
	}
	// The size is checked: allocate no more than the limit allows.
	p := make([]byte, n-1)
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Type: t, Payload: p}, nil
}

// Write writes f to w in one Write.
func Write(w io.Writer, f Frame, l Limits) error {
	b, err := Append(nil, f, l)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// HelloFrame is the program's first frame.
func HelloFrame() Frame {
	p := append([]byte(Magic), 0, 0)
	binary.BigEndian.PutUint16(p[len(Magic):], Version)
	return Frame{Type: Hello, Payload: p}
}

// ParseHello checks a Hello's magic and version.
func ParseHello(f Frame) error {
	if f.Type != Hello || len(f.Payload) != helloSize || string(f.Payload[:len(Magic)]) != Magic {
		return fmt.Errorf("%w: not a hello", ErrPayload)
	}
	if v := binary.BigEndian.Uint16(f.Payload[len(Magic):]); v != Version {
		return fmt.Errorf("%w: %d", ErrVersion, v)
	}
	return nil
}

// ErrorFrame is an Error with text, cut to MaxError bytes.
func ErrorFrame(text string) Frame {
	if len(text) > MaxError {
		text = strings.ToValidUTF8(text[:MaxError], "")
	}
	return Frame{Type: Error, Payload: []byte(text)}
}
