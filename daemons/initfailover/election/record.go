package election

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RecordLen is the size of a lock value block (dlm.ValueLen).
const RecordLen = 32

// recordMagic starts every Record, so that a value block written by
// anything else is never taken for one.
var recordMagic = [4]byte{'O', 'S', 'I', 'F'}

const (
	recordVersion = 1
	flagClean     = 1 << 0
)

// ErrRecord is wrapped by Decode for a value block that is not a Record.
var ErrRecord = errors.New("not an init record")

// Record is what a holder of the init lock leaves in its value block when
// it unlocks cleanly.
type Record struct {
	// Clean: the writer's services were stopped when it unlocked.
	Clean bool
	// Holder is the node that wrote it.
	Holder uint32
	// Next is the node the role is handed to (0: any).
	Next uint32
	// MoveBy, Move and Boot name the hand-over (node that asked, its
	// counter, the random nonce of its initfailover's boot: the counter
	// starts again when it restarts), so that a node passes one
	// hand-over on at most once.
	MoveBy, Move uint32
	Boot         uint64
}

// Encode returns r as a value block.
func (r Record) Encode() [RecordLen]byte {
	var b [RecordLen]byte
	copy(b[:4], recordMagic[:])
	b[4] = recordVersion
	if r.Clean {
		b[5] = flagClean
	}
	binary.BigEndian.PutUint32(b[8:], r.Holder)
	binary.BigEndian.PutUint32(b[12:], r.Next)
	binary.BigEndian.PutUint32(b[16:], r.MoveBy)
	binary.BigEndian.PutUint32(b[20:], r.Move)
	binary.BigEndian.PutUint64(b[24:], r.Boot)
	return b
}

// Decode reads a Record from a value block. Anything but an exact Record
// (wrong length, magic, version, unknown flags, bytes that must be zero,
// a hand-over naming node 0 or by node 0, a nonce without a hand-over) is
// refused with ErrRecord.
func Decode(b []byte) (Record, error) {
	if len(b) != RecordLen {
		return Record{}, fmt.Errorf("election: %d bytes: %w", len(b), ErrRecord)
	}
	if [4]byte(b[:4]) != recordMagic || b[4] != recordVersion {
		return Record{}, fmt.Errorf("election: bad magic or version: %w", ErrRecord)
	}
	if b[5]&^flagClean != 0 || b[6] != 0 || b[7] != 0 {
		return Record{}, fmt.Errorf("election: unknown flags: %w", ErrRecord)
	}
	r := Record{
		Clean:  b[5]&flagClean != 0,
		Holder: binary.BigEndian.Uint32(b[8:]),
		Next:   binary.BigEndian.Uint32(b[12:]),
		MoveBy: binary.BigEndian.Uint32(b[16:]),
		Move:   binary.BigEndian.Uint32(b[20:]),
		Boot:   binary.BigEndian.Uint64(b[24:]),
	}
	if r.Next != 0 && r.MoveBy == 0 {
		return Record{}, fmt.Errorf("election: hand-over to node %d by no node: %w", r.Next, ErrRecord)
	}
	if r.Next == 0 && r.Boot != 0 {
		return Record{}, fmt.Errorf("election: boot nonce without a hand-over: %w", ErrRecord)
	}
	return r, nil
}
