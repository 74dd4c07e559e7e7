package stdioflow

import (
	"testing"

	"google.golang.org/protobuf/proto"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// TestChunkFitsAPoolBuffer: every stdio message of a full Chunk, as each
// hop encodes it, fits one of gRPC's 1 MiB pool buffers (see Chunk).
func TestChunkFitsAPoolBuffer(t *testing.T) {
	b := make([]byte, Chunk)
	for _, tc := range []struct {
		what string
		m    proto.Message
	}{
		{"stdin from the caller", &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b}}},
		{"stdout to the caller", &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: b}}},
		{"stderr to the caller", &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stderr{Stderr: b}}},
		{"stdin to the target", &vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{
			Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b}}}}},
	} {
		if n := proto.Size(tc.m); n > 1<<20 {
			t.Errorf("%s: %d bytes encoded, over 1 MiB", tc.what, n)
		}
	}
}

func TestNextRead(t *testing.T) {
	for _, tc := range []struct{ size, k, want int }{
		{FirstRead, 10, FirstRead},            // a slow writer: same buffer
		{FirstRead, FirstRead, 4 * FirstRead}, // a full read: larger
		{4 * FirstRead, 4 * FirstRead, 16 * FirstRead},
		{16 * FirstRead, 16 * FirstRead, Chunk}, // never past a Chunk
		{Chunk, Chunk, Chunk},
		{Chunk, 1, Chunk},
	} {
		if got := NextRead(tc.size, tc.k); got != tc.want {
			t.Errorf("NextRead(%d, %d) = %d, want %d", tc.size, tc.k, got, tc.want)
		}
	}
}
