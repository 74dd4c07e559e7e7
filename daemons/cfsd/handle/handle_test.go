package handle

import (
	"bytes"
	"errors"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestRoundTrip(t *testing.T) {
	s, err := NewSigner("home", key(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kernel{
		{Type: 1, Bytes: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{Type: -2, Bytes: bytes.Repeat([]byte{9}, MaxKernel)},
	} {
		h, err := s.Encode(k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Decode(h)
		if err != nil || got.Type != k.Type || !bytes.Equal(got.Bytes, k.Bytes) {
			t.Fatalf("Decode(Encode(%v)) = %v, %v", k, got, err)
		}
	}
}

func TestRefused(t *testing.T) {
	s, _ := NewSigner("home", key(1))
	other, _ := NewSigner("home", key(2))
	otherExport, _ := NewSigner("srv", key(1))
	k := Kernel{Type: 1, Bytes: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	h, _ := s.Encode(k)
	flipped := func(i int) []byte {
		b := append([]byte(nil), h...)
		b[i] ^= 1
		return b
	}
	for name, bad := range map[string][]byte{
		"empty":              nil,
		"short":              h[:10],
		"long":               append(append([]byte(nil), h...), 0),
		"type changed":       flipped(2),
		"kernel handle byte": flipped(7),
		"signature byte":     flipped(len(h) - 1),
		"version":            flipped(0),
		"length":             flipped(5),
	} {
		if _, err := s.Decode(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
	for name, signer := range map[string]*Signer{"another key": other, "another scope": otherExport} {
		if _, err := signer.Decode(h); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Encode(Kernel{Type: 1}); err == nil {
		t.Error("Encode of an empty kernel handle succeeded")
	}
	if _, err := NewSigner("home", key(1)[:5]); err == nil {
		t.Error("NewSigner with a short key succeeded")
	}
}

// FuzzDecode: a client's handle is outside input; nothing but a handle
// the signer made decodes, and nothing panics.
func FuzzDecode(f *testing.F) {
	s, _ := NewSigner("home", key(1))
	h, _ := s.Encode(Kernel{Type: 1, Bytes: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
	f.Add(h)
	f.Add([]byte{1, 0, 0, 0, 1, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := s.Decode(b)
		if err != nil {
			return
		}
		again, err := s.Encode(k)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded %x, which re-encodes to %x (%v)", b, again, err)
		}
	})
}
