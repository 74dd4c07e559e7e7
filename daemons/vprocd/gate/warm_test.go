package gate

import (
	"bytes"
	"reflect"
	"testing"
)

func TestLaunchRoundTrip(t *testing.T) {
	for _, l := range []Launch{
		{Path: "/bin/true", Argv: []string{"true"}, Dir: "/", Setpgid: true},
		{Path: "/usr/bin/vi", Argv: []string{"vi", "a b", ""}, Env: []string{"TERM=xterm", "X=\xff"}, Dir: "/home/a", Setsid: true, Setctty: true},
		{Path: "/bin/sleep", Argv: []string{"sleep", "9"}, Env: []string{}, Dir: "/tmp", Setsid: true},
	} {
		b := Encode(l)
		if n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]); n != len(b)-4 {
			t.Fatalf("length %d, body %d", n, len(b)-4)
		}
		got, err := Decode(b[4:])
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", l, err)
		}
		if l.Env == nil {
			l.Env = []string{}
		}
		if !reflect.DeepEqual(got, l) {
			t.Fatalf("got %+v, want %+v", got, l)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := Encode(Launch{Path: "/bin/true", Argv: []string{"true"}, Dir: "/", Setpgid: true})[4:]
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, body := range map[string][]byte{
		"empty":          nil,
		"version":        mod(func(b []byte) []byte { b[0] = 9; return b }),
		"unknown flag":   mod(func(b []byte) []byte { b[1] |= 0x80; return b }),
		"ctty alone":     mod(func(b []byte) []byte { b[1] = flagSetctty; return b }),
		"sid and pgid":   mod(func(b []byte) []byte { b[1] = flagSetsid | flagSetpgid; return b }),
		"short":          good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
		"no path":        Encode(Launch{Argv: []string{"x"}})[4:],
		"no argv":        Encode(Launch{Path: "/x"})[4:],
		"nul in arg":     Encode(Launch{Path: "/x", Argv: []string{"a\x00b"}})[4:],
		"count too big":  append(good[:len(good)-4:len(good)-4], 0xff, 0xff, 0xff, 0xff),
		"string too big": mod(func(b []byte) []byte { b[2] = 0x7f; return b }),
	} {
		if _, err := Decode(body); err == nil {
			t.Errorf("%s: Decode(%q) accepted", name, body)
		}
	}
}

// FuzzDecode: a warm gate decodes what comes over its socket; whatever
// it accepts is exactly what Encode makes of it.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(Launch{Path: "/bin/true", Argv: []string{"true"}, Dir: "/", Setpgid: true})[4:])
	f.Add(Encode(Launch{Path: "/bin/sh", Argv: []string{"sh", "-c", "x"}, Env: []string{"A=B"}, Dir: "/", Setsid: true, Setctty: true})[4:])
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := Decode(body)
		if err != nil {
			return
		}
		if again := Encode(l)[4:]; !bytes.Equal(again, body) {
			t.Fatalf("Decode(%q) = %+v, which encodes as %q", body, l, again)
		}
	})
}
