// Package handle holds cfsd's file handles: what a server gives a client
// to name a file, and what it checks before it believes one.
//
// A handle is the kernel's own (name_to_handle_at(2)), which names an
// inode whatever its path and survives renames and a restart of the
// server, signed with the export's key. The signature is what keeps a
// client inside its export: open_by_handle_at(2) opens any inode of the
// file system by its handle, so a server opens only a handle it made
// itself for this export, never one a client composed.
package handle

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	version = 1
	macSize = 16
	// MaxKernel is the largest kernel handle kept (MAX_HANDLE_SZ).
	MaxKernel = 128
	// MaxSize is the largest encoded handle.
	MaxSize = 1 + 4 + 1 + MaxKernel + macSize
	// KeySize is the size of an export's key.
	KeySize = 32
)

// ErrInvalid is the answer to a handle this export did not make: the
// client gets ESTALE, as from NFS for a handle the server cannot use.
var ErrInvalid = errors.New("handle: not a handle of this export")

// Kernel is a kernel file handle: its type and its bytes.
type Kernel struct {
	Type  int32
	Bytes []byte
}

// Signer makes and checks the handles of one export.
type Signer struct {
	scope string
	key   []byte
}

// NewSigner returns the signer of the handles of scope with key
// (KeySize bytes). The scope names what the handles are valid in (the
// export's name and the directory it serves): a handle made for one
// scope does not decode in another, even under the same key, so an
// export moved to another directory does not honour the handles of the
// old one.
func NewSigner(scope string, key []byte) (*Signer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("handle: a key of %d bytes, not %d", len(key), KeySize)
	}
	return &Signer{scope: scope, key: append([]byte(nil), key...)}, nil
}

func (s *Signer) mac(body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(s.scope))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:macSize]
}

// Encode signs k into the handle given to clients.
func (s *Signer) Encode(k Kernel) ([]byte, error) {
	if len(k.Bytes) == 0 || len(k.Bytes) > MaxKernel {
		return nil, fmt.Errorf("handle: a kernel handle of %d bytes (1 to %d)", len(k.Bytes), MaxKernel)
	}
	b := make([]byte, 0, 6+len(k.Bytes)+macSize)
	b = append(b, version)
	b = binary.BigEndian.AppendUint32(b, uint32(k.Type))
	b = append(b, byte(len(k.Bytes)))
	b = append(b, k.Bytes...)
	return append(b, s.mac(b)...), nil
}

// Decode returns the kernel handle inside h, or ErrInvalid unless this
// signer made h.
func (s *Signer) Decode(h []byte) (Kernel, error) {
	if len(h) < 6+1+macSize || len(h) > MaxSize || h[0] != version {
		return Kernel{}, ErrInvalid
	}
	n := int(h[5])
	if n == 0 || n > MaxKernel || len(h) != 6+n+macSize {
		return Kernel{}, ErrInvalid
	}
	body := h[:6+n]
	if !hmac.Equal(s.mac(body), h[6+n:]) {
		return Kernel{}, ErrInvalid
	}
	return Kernel{Type: int32(binary.BigEndian.Uint32(h[1:5])), Bytes: append([]byte(nil), h[6:6+n]...)}, nil
}
