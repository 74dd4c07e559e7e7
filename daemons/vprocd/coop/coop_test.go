package coop

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	l := Limits{State: 1 << 10}
	frames := []Frame{
		HelloFrame(),
		{Type: Start},
		{Type: State, Payload: []byte("counter=41")},
		{Type: State, Payload: []byte{}},
		{Type: State, Payload: bytes.Repeat([]byte{7}, 1<<10)},
		{Type: Restored},
		{Type: Resume},
		{Type: Checkpoint},
		ErrorFrame("no space left"),
	}
	var buf []byte
	for _, f := range frames {
		var err error
		if buf, err = Append(buf, f, l); err != nil {
			t.Fatalf("Append %s: %v", f.Type, err)
		}
	}
	// Decode, from the buffer and from a stream, gives them back.
	rest := buf
	r := bytes.NewReader(buf)
	for _, want := range frames {
		f, n, err := Decode(rest, l)
		if err != nil {
			t.Fatalf("Decode %s: %v", want.Type, err)
		}
		rest = rest[n:]
		g, err := Read(r, l)
		if err != nil {
			t.Fatalf("Read %s: %v", want.Type, err)
		}
		for _, got := range []Frame{f, g} {
			if got.Type != want.Type || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("got %s %q, want %s %q", got.Type, got.Payload, want.Type, want.Payload)
			}
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left", len(rest))
	}
	if _, err := Read(r, l); err != io.EOF {
		t.Fatalf("Read at the end: %v", err)
	}
	// Every prefix of a frame is short.
	one, _ := Append(nil, Frame{Type: State, Payload: []byte("abc")}, l)
	for i := range len(one) {
		if _, _, err := Decode(one[:i], l); err != ErrShort {
			t.Fatalf("Decode of %d bytes: %v", i, err)
		}
	}
}

func TestRefused(t *testing.T) {
	l := Limits{State: 16}
	frame := func(n uint32, typ byte, payload ...byte) []byte {
		return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), typ}, payload...)
	}
	cases := []struct {
		name string
		buf  []byte
		want error
	}{
		{"empty frame", []byte{0, 0, 0, 0}, ErrPayload},
		{"unknown type", frame(1, 99), ErrType},
		{"type zero", frame(1, 0), ErrType},
		{"state over the limit", frame(18, byte(State)), ErrTooLarge},
		{"huge length", frame(0xffffffff, byte(State)), ErrTooLarge},
		{"error text too long", frame(MaxError+2, byte(Error)), ErrTooLarge},
		{"resume with payload", frame(2, byte(Resume), 1), ErrPayload},
		{"short hello", frame(3, byte(Hello), 'O', 'S'), ErrPayload},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := Decode(c.buf, l); !errors.Is(err, c.want) {
				t.Fatalf("Decode: %v, want %v", err, c.want)
			}
			if _, err := Read(bytes.NewReader(c.buf), l); !errors.Is(err, c.want) {
				t.Fatalf("Read: %v, want %v", err, c.want)
			}
		})
	}
	if _, err := Append(nil, Frame{Type: State, Payload: make([]byte, 17)}, l); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append over the limit: %v", err)
	}
	if _, err := Read(bytes.NewReader(frame(4, byte(State), 1)), l); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Read of a cut frame: %v", err)
	}
}

func TestHello(t *testing.T) {
	if err := ParseHello(HelloFrame()); err != nil {
		t.Fatal(err)
	}
	bad := HelloFrame()
	bad.Payload[len(Magic)+1] = 2
	if err := ParseHello(bad); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 2: %v", err)
	}
	if err := ParseHello(Frame{Type: Hello, Payload: []byte("OSSIXXXX\x00\x01")}); !errors.Is(err, ErrPayload) {
		t.Fatalf("bad magic: %v", err)
	}
	if err := ParseHello(Frame{Type: Start}); !errors.Is(err, ErrPayload) {
		t.Fatalf("not a hello: %v", err)
	}
}

func TestDefaultLimit(t *testing.T) {
	if (Limits{}).state() != DefaultStateLimit || DefaultStateLimit != 64<<20 {
		t.Fatal("default state limit")
	}
	f := ErrorFrame(strings.Repeat("é", MaxError))
	if len(f.Payload) > MaxError || !strings.HasPrefix(string(f.Payload), "é") {
		t.Fatalf("error text of %d bytes", len(f.Payload))
	}
	if _, err := Append(nil, f, Limits{}); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecode: Decode never panics, never takes more than it was given,
// and what it decodes encodes back to the same bytes (and Read agrees).
func FuzzDecode(f *testing.F) {
	l := Limits{State: 1 << 12}
	for _, fr := range []Frame{HelloFrame(), {Type: State, Payload: []byte("x")}, {Type: Resume}, ErrorFrame("e")} {
		b, _ := Append(nil, fr, l)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := Decode(b, l)
		rf, rerr := Read(bytes.NewReader(b), l)
		if err != nil {
			if err != ErrShort && rerr == nil {
				t.Fatalf("Decode: %v but Read: ok", err)
			}
			return
		}
		if n > len(b) || n < HeaderSize {
			t.Fatalf("took %d of %d bytes", n, len(b))
		}
		if rerr != nil || rf.Type != fr.Type || !bytes.Equal(rf.Payload, fr.Payload) {
			t.Fatalf("Read disagrees: %v", rerr)
		}
		enc, err := Append(nil, fr, l)
		if err != nil || !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}
