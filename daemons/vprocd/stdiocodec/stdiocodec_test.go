package stdiocodec

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

func chunk(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// split cuts b into buffers of size, as gRPC's frames come.
func split(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(size, len(b))
		s = append(s, mem.SliceBuffer(append([]byte(nil), b[:k]...)))
		b = b[k:]
	}
	return s
}

func messages(b []byte) []proto.Message {
	return []proto.Message{
		&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: b}},
		&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stderr{Stderr: b}},
		&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b}},
		&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b}}}},
		// Not stdio chunks: proto's way.
		&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Exit{Exit: &vprocv1.Exit{Code: 3, Reason: strings.Repeat("r", len(b))}}},
		&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: 2}}}},
		&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{Argv: [][]byte{b}}}},
	}
}

// TestSameBytes: what Codec sends is what proto.Marshal makes, and what
// it decodes is what proto.Unmarshal makes, for chunks either side of
// minChunk, up to a stdioflow.Chunk, split into 16 KiB frames or not.
func TestSameBytes(t *testing.T) {
	var c Codec
	for _, n := range []int{0, 1, minChunk - 1, minChunk, 100 << 10, 1<<20 - 1<<10} {
		for _, m := range messages(chunk(n)) {
			want, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Materialize(), want) {
				t.Errorf("%T of %d bytes: encoded differently from proto.Marshal", m, n)
			}
			got.Free()
			for _, frame := range []int{len(want) + 1, 16 << 10, 7} {
				out := m.ProtoReflect().New().Interface()
				if err := c.Unmarshal(split(want, max(frame, 1)), out); err != nil {
					t.Fatalf("%T of %d bytes: %v", m, n, err)
				}
				if !proto.Equal(out, m) {
					t.Errorf("%T of %d bytes in frames of %d: decoded differently", m, n, frame)
				}
			}
		}
	}
}

// TestChunkNotCopied: a chunk is sent as it is (which is why client/vproc,
// whose callers may reuse their buffers, does not use Codec).
func TestChunkNotCopied(t *testing.T) {
	b := chunk(minChunk)
	data, err := Codec{}.Marshal(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: b}})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 2 || &data[1].ReadOnlyData()[0] != &b[0] {
		t.Fatal("the chunk was copied")
	}
}

// TestDecodeDeclines: data that is not one stdio field holding it all is
// left to proto (decode says so and leaves the message alone).
func TestDecodeDeclines(t *testing.T) {
	b := chunk(minChunk)
	one, _ := proto.Marshal(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: b}})
	for _, tc := range []struct {
		name string
		data []byte
		into proto.Message
	}{
		{"short", one[:minChunk-1], &vprocv1.ExecOutput{}},
		{"a field after it", append(append([]byte(nil), one...), 0x20, 1), &vprocv1.ExecOutput{}},
		{"cut", one[:len(one)-1], &vprocv1.ExecOutput{}},
		{"started's field", append([]byte{0x0a}, one[1:]...), &vprocv1.ExecOutput{}},
		{"into a PeerExecInput, no nested input", one, &vprocpeerv1.PeerExecInput{}},
		{"into another type", one, &vprocv1.Exit{}},
	} {
		if decode(split(tc.data, 16<<10), tc.into) {
			t.Errorf("%s: decoded", tc.name)
		}
	}
}

// FuzzDecode: whatever bytes come, the short way decodes them as proto
// does, or declines.
func FuzzDecode(f *testing.F) {
	for _, m := range messages(chunk(minChunk)) {
		b, _ := proto.Marshal(m)
		f.Add(b, uint16(16<<10))
	}
	f.Add(bytes.Repeat([]byte{0x12}, minChunk+20), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, frame uint16) {
		frame = max(frame, 8) // a head may still straddle frames
		for _, into := range []func() proto.Message{
			func() proto.Message { return &vprocv1.ExecOutput{} },
			func() proto.Message { return &vprocv1.ExecInput{} },
			func() proto.Message { return &vprocpeerv1.PeerExecInput{} },
		} {
			got := into()
			if !decode(split(data, int(frame)), got) {
				continue
			}
			want := into()
			if err := proto.Unmarshal(data, want); err != nil {
				t.Fatalf("%T: decoded what proto refuses: %v", got, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T: decoded %v, proto %v", got, brief(got), brief(want))
			}
		}
	})
}

// FuzzFrame: a stdio message of any chunk is encoded as proto.Marshal
// encodes it.
func FuzzFrame(f *testing.F) {
	f.Add([]byte("x"), uint8(0), 5000)
	f.Fuzz(func(t *testing.T, seed []byte, kind uint8, n int) {
		if n < 0 || n > 1<<20 || len(seed) == 0 {
			return
		}
		b := bytes.Repeat(seed, n/len(seed)+1)[:n]
		m := messages(b)[int(kind)%4]
		want, _ := proto.Marshal(m)
		got, err := Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), want) {
			t.Fatalf("%T of %d bytes: encoded differently", m, n)
		}
	})
}

func brief(m proto.Message) string {
	s := ""
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		s += string(fd.Name()) + " "
		return true
	})
	return s
}
