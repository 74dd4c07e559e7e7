package execwire

import (
	"errors"
	"go/parser"
	"go/token"
	"reflect"
	"testing"
)

func TestHeader(t *testing.T) {
	for _, tc := range []struct {
		kind byte
		n    int
	}{{KindInput, 0}, {KindOutput, 1}, {KindStatus, MaxMessage}} {
		h := AppendHeader(nil, tc.kind, tc.n)
		var a [HeaderSize]byte
		copy(a[:], h)
		kind, n, err := ParseHeader(a)
		if err != nil || kind != tc.kind || n != tc.n {
			t.Errorf("%d/%d: got %d/%d %v", tc.kind, tc.n, kind, n, err)
		}
	}
}

func TestParseHeaderRefuses(t *testing.T) {
	for _, tc := range []struct {
		h    [HeaderSize]byte
		want error
	}{
		{[HeaderSize]byte{0, 0, 0, 0, 1}, ErrEmpty},
		{[HeaderSize]byte{0, 0x40, 0, 2, 1}, ErrTooLong},
		{[HeaderSize]byte{0xff, 0xff, 0xff, 0xff, 1}, ErrTooLong},
		{[HeaderSize]byte{0, 0, 0, 1, 0}, ErrKind},
		{[HeaderSize]byte{0, 0, 0, 1, 4}, ErrKind},
	} {
		if _, _, err := ParseHeader(tc.h); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.h, err, tc.want)
		}
	}
}

func TestSocketPath(t *testing.T) {
	for in, want := range map[string]string{
		"/run/openssi/vprocd.sock": "/run/openssi/vprocd-exec.sock",
		"/tmp/x/vprocd2.sock":      "/tmp/x/vprocd2-exec.sock",
		"/tmp/x/vprocd":            "/tmp/x/vprocd-exec",
	} {
		if got := SocketPath(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1})
	f.Add([]byte{0xff, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h [HeaderSize]byte
		copy(h[:], b)
		kind, n, err := ParseHeader(h)
		if err != nil {
			return
		}
		if n < 0 || n > MaxMessage || kind < KindInput || kind > KindStatus {
			t.Fatalf("%v: kind %d n %d accepted", h, kind, n)
		}
		var again [HeaderSize]byte
		copy(again[:], AppendHeader(nil, kind, n))
		if again != h {
			t.Fatalf("%v: encodes back as %v", h, again)
		}
	})
}

// TestImportsNothing: see the package doc.
func TestImportsNothing(t *testing.T) {
	for name, want := range map[string][]string{"execwire.go": nil, "output.go": nil, "passable.go": {`"syscall"`}} {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, im := range f.Imports {
			got = append(got, im.Path.Value)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s imports %v, want %v", name, got, want)
		}
	}
}
