package stdioflow

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestPoolGet(t *testing.T) {
	for _, tc := range []struct{ n, wantCap int }{
		{0, 256},
		{1, 256},
		{256, 256},
		{257, 4 << 10},
		{16 << 10, 16 << 10},
		{Chunk, 1 << 20},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 1<<20 + 1}, // past the tiers: allocated as asked
	} {
		p := &dirtyPool{}
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.wantCap)
		}
	}
}

func TestPoolPutKeepsByTier(t *testing.T) {
	for _, tc := range []struct {
		cap  int
		tier int // -1: dropped
	}{
		{100, -1},
		{256, 0},
		{300, 0},
		{4 << 10, 1},
		{1 << 20, 4},
		{1<<20 + 1, -1},
	} {
		if got := putTier(tc.cap); got != tc.tier {
			t.Errorf("putTier(%d) = %d, want %d", tc.cap, got, tc.tier)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	var c Codec
	for _, n := range []int{0, 10, 64 << 10, Chunk} {
		in := make([]byte, n)
		for i := range in {
			in[i] = byte(i * 7)
		}
		// A stdio message through the codec, as a wrapped bytes value.
		m := wrapBytes(in)
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out := wrapBytes(nil)
		// Split it as frames come, so that Unmarshal joins them.
		if err := c.Unmarshal(split(data.Materialize(), 16<<10), out); err != nil {
			t.Fatal(err)
		}
		data.Free()
		if got := out.GetValue(); string(got) != string(in) {
			t.Fatalf("%d bytes: got %d bytes back, different", n, len(got))
		}
	}
}

func split(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(size, len(b))
		s = append(s, mem.SliceBuffer(append([]byte(nil), b[:k]...)))
		b = b[k:]
	}
	return s
}

// wrapBytes is a proto message holding b.
func wrapBytes(b []byte) *wrapperspb.BytesValue { return wrapperspb.Bytes(b) }
