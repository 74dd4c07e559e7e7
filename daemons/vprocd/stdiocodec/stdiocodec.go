// Package stdiocodec is vprocd's gRPC codec: protobuf's encoding
// (stdioflow.Codec), with the messages that carry a program's stdio (one
// chunk of stdin, stdout or stderr, and nothing else) encoded without
// copying the chunk and decoded with one copy instead of two: gRPC's own
// way copied each chunk into a buffer to marshal it, and on receipt
// joined the frames into one buffer and then copied the chunk out of it.
//
// Only vprocd uses it, on its servers and on its connections to peers:
// the chunks it sends are never changed after the send (each read of a
// program's output or of a passed stdin gets a buffer of its own), which
// encoding without a copy needs. A library caller may reuse its buffer
// once Send returns, so client/vproc keeps stdioflow's codec.
package stdiocodec

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/stdioflow"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// minChunk is the smallest chunk taken the short way: below it, what a
// copy costs is not worth a path of its own.
const minChunk = 4 << 10

// Field numbers of the stdio messages (proto/vproc/v1, vprocpeer/v1).
const (
	inStdin   protowire.Number = 2 // ExecInput.stdin
	outStdout protowire.Number = 2 // ExecOutput.stdout
	outStderr protowire.Number = 3 // ExecOutput.stderr
	peerInput protowire.Number = 2 // PeerExecInput.input
)

// Codec is the codec (gRPC's encoding.CodecV2).
type Codec struct{}

// ServerOptions are stdioflow's, with Codec.
func ServerOptions() []grpc.ServerOption {
	return append(stdioflow.ServerOptions(), grpc.ForceServerCodecV2(Codec{}))
}

// PeerDialOptions are stdioflow's, with Codec: the options of vprocd's
// connections to its peers.
func PeerDialOptions() []grpc.DialOption {
	return append(stdioflow.DialOptions(), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{})))
}

func (Codec) Name() string { return "proto" }

// Marshal encodes v; a stdio message's chunk is not copied: the result
// refers to it.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if head, chunk, ok := frame(v); ok {
		return mem.BufferSlice{mem.SliceBuffer(head), mem.SliceBuffer(chunk)}, nil
	}
	return stdioflow.Codec{}.Marshal(v)
}

// Unmarshal decodes data into v, a stdio message by copying its chunk
// once out of data.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if decode(data, v) {
		return nil
	}
	return stdioflow.Codec{}.Unmarshal(data, v)
}

// frame returns the encoding of a stdio message as what precedes the
// chunk and the chunk (the bytes proto.Marshal makes, the chunk not
// copied), or ok false for any other message.
func frame(v any) (head, chunk []byte, ok bool) {
	switch m := v.(type) {
	case *vprocv1.ExecOutput:
		if len(m.ProtoReflect().GetUnknown()) != 0 {
			return nil, nil, false
		}
		switch k := m.Kind.(type) {
		case *vprocv1.ExecOutput_Stdout:
			return field(nil, outStdout, k.Stdout)
		case *vprocv1.ExecOutput_Stderr:
			return field(nil, outStderr, k.Stderr)
		}
	case *vprocv1.ExecInput:
		if k, isStdin := m.Kind.(*vprocv1.ExecInput_Stdin); isStdin && len(m.ProtoReflect().GetUnknown()) == 0 {
			return field(nil, inStdin, k.Stdin)
		}
	case *vprocpeerv1.PeerExecInput:
		in, isInput := m.Kind.(*vprocpeerv1.PeerExecInput_Input)
		if !isInput || in.Input == nil || len(m.ProtoReflect().GetUnknown()) != 0 || len(in.Input.ProtoReflect().GetUnknown()) != 0 {
			return nil, nil, false
		}
		k, isStdin := in.Input.Kind.(*vprocv1.ExecInput_Stdin)
		if !isStdin {
			return nil, nil, false
		}
		inner := protowire.SizeTag(inStdin) + protowire.SizeBytes(len(k.Stdin)) - len(k.Stdin)
		head := protowire.AppendTag(nil, peerInput, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(inner+len(k.Stdin)))
		return field(head, inStdin, k.Stdin)
	}
	return nil, nil, false
}

// field appends the tag and length of field n holding chunk to head.
func field(head []byte, n protowire.Number, chunk []byte) ([]byte, []byte, bool) {
	if len(chunk) < minChunk {
		return nil, nil, false
	}
	head = protowire.AppendTag(head, n, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(chunk)))
	return head, chunk, true
}

// maxHead is the longest head decode reads: two tags and two lengths, of
// at most 10 bytes each (a varint's longest).
const maxHead = 4 * 10

// decode decodes data into v when v is a stdio message and data is one
// (a single field that holds all of it: what frame makes, or proto for
// such a message), and says whether it did; v is then what proto.Unmarshal
// would make of data.
func decode(data mem.BufferSlice, v any) bool {
	total := data.Len()
	if total < minChunk {
		return false
	}
	var buf [maxHead]byte
	head := prefix(data, buf[:])
	switch m := v.(type) {
	case *vprocv1.ExecOutput:
		n, size, ok := single(head, total)
		if !ok || (n != outStdout && n != outStderr) {
			return false
		}
		chunk := copyFrom(data, total-size, size)
		proto.Reset(m)
		if n == outStdout {
			m.Kind = &vprocv1.ExecOutput_Stdout{Stdout: chunk}
		} else {
			m.Kind = &vprocv1.ExecOutput_Stderr{Stderr: chunk}
		}
		return true
	case *vprocv1.ExecInput:
		n, size, ok := single(head, total)
		if !ok || n != inStdin {
			return false
		}
		chunk := copyFrom(data, total-size, size)
		proto.Reset(m)
		m.Kind = &vprocv1.ExecInput_Stdin{Stdin: chunk}
		return true
	case *vprocpeerv1.PeerExecInput:
		n, size, ok := single(head, total)
		if !ok || n != peerInput {
			return false
		}
		at := total - size // where the ExecInput starts
		if at >= len(head) {
			return false
		}
		n, isize, ok := single(head[at:], size)
		if !ok || n != inStdin {
			return false
		}
		chunk := copyFrom(data, total-isize, isize)
		proto.Reset(m)
		m.Kind = &vprocpeerv1.PeerExecInput_Input{Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: chunk}}}
		return true
	}
	return false
}

// single reads the tag and length at the start of b, the first bytes of a
// message of total bytes, and returns the field's number and length when
// it is one length-delimited field that ends the message exactly.
func single(b []byte, total int) (protowire.Number, int, bool) {
	n, typ, k := protowire.ConsumeTag(b)
	if k < 0 || typ != protowire.BytesType {
		return 0, 0, false
	}
	size, l := protowire.ConsumeVarint(b[k:])
	if l < 0 || size != uint64(total-k-l) {
		return 0, 0, false
	}
	return n, int(size), true
}

// prefix copies the first bytes of data into buf and returns them.
func prefix(data mem.BufferSlice, buf []byte) []byte {
	n := 0
	for _, b := range data {
		n += copy(buf[n:], b.ReadOnlyData())
		if n == len(buf) {
			break
		}
	}
	return buf[:n]
}

// copyFrom returns a copy of the size bytes of data from offset off.
func copyFrom(data mem.BufferSlice, off, size int) []byte {
	out := make([]byte, size)
	n := 0
	for _, b := range data {
		d := b.ReadOnlyData()
		if off >= len(d) {
			off -= len(d)
			continue
		}
		n += copy(out[n:], d[off:])
		off = 0
	}
	return out
}
