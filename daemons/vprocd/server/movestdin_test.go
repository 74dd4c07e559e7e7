package server

import (
	"bytes"
	"testing"
)

func TestStdinLog(t *testing.T) {
	join := func(bs [][]byte) string { return string(bytes.Join(bs, nil)) }
	var l stdinLog
	for _, s := range []string{"abc", "", "defg", "hi"} {
		l.add([]byte(s))
	}
	for _, tc := range []struct {
		taken int64
		rest  string
		lost  int64
	}{
		{0, "abcdefghi", 0},
		{3, "defghi", 0},
		{5, "fghi", 0},
		{9, "", 0},
		{12, "", 0},
	} {
		c := l
		c.chunks = append([][]byte(nil), l.chunks...)
		rest, lost := c.from(tc.taken)
		if join(rest) != tc.rest || lost != tc.lost {
			t.Errorf("from(%d) = %q, %d; want %q, %d", tc.taken, join(rest), lost, tc.rest, tc.lost)
		}
		if c.sent != int64(len(tc.rest)) || c.first != 0 {
			t.Errorf("from(%d): the new stream has sent %d from %d", tc.taken, c.sent, c.first)
		}
	}
	// Past maxStdinLog the oldest chunks go: what was taken before them
	// is lost.
	var big stdinLog
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for range 6 {
		big.add(chunk)
	}
	if big.size > maxStdinLog || big.first != 2<<20 || big.sent != 6<<20 {
		t.Fatalf("kept %d from %d of %d", big.size, big.first, big.sent)
	}
	rest, lost := big.from(1 << 20)
	if lost != 1<<20 || len(join(rest)) != 4<<20 {
		t.Errorf("from(1 MiB) = %d bytes, lost %d", len(join(rest)), lost)
	}
}
