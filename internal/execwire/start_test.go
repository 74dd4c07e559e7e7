package execwire_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// TestStartFrameDecodes: the hand-made frame is what protobuf decodes as
// the ExecInput it stands for.
func TestStartFrameDecodes(t *testing.T) {
	long := strings.Repeat("x", 300) // lengths of more than one varint byte
	for _, s := range []execwire.Start{
		{Argv: []string{"true"}},
		{Node: 2, Argv: []string{"sh", "-c", "echo $A", ""}, Env: []string{"A=1", "PATH=/bin", long}, Cwd: "/tmp", PassedStdio: 7},
		{Node: 300, Argv: []string{long, "\x00\xff"}, PassedStdio: 5},
	} {
		frame := execwire.AppendStartFrame(nil, s)
		var h [execwire.HeaderSize]byte
		copy(h[:], frame)
		kind, n, err := execwire.ParseHeader(h)
		if err != nil || kind != execwire.KindInput || n != len(frame)-execwire.HeaderSize {
			t.Fatalf("%+v: header kind %d length %d (frame %d) %v", s, kind, n, len(frame), err)
		}
		got := &vprocv1.ExecInput{}
		if err := proto.Unmarshal(frame[execwire.HeaderSize:], got); err != nil {
			t.Fatal(err)
		}
		want := &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{
			Node: s.Node, Argv: bytesOf(s.Argv), Env: bytesOf(s.Env), Cwd: []byte(s.Cwd), PassedStdio: s.PassedStdio}}}
		if s.Cwd == "" {
			want.GetStart().Cwd = nil
		}
		if !proto.Equal(got, want) {
			t.Errorf("%+v: decodes as %v, want %v", s, got, want)
		}
	}
}

func bytesOf(ss []string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

func TestMergeEnv(t *testing.T) {
	got, _, ok := execwire.MergeEnv([]string{"A=1", "B=2", "B=9", "C"}, []string{"B=3", "C=", "D=x=y"})
	want := []string{"A=1", "B=3", "B=3", "C=", "D=x=y"}
	if !ok || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("MergeEnv: %q %v, want %q", got, ok, want)
	}
	for _, bad := range []string{"novalue", "=v", "A=\x00"} {
		if _, b, ok := execwire.MergeEnv(nil, []string{bad}); ok || b != bad {
			t.Errorf("MergeEnv(%q): ok %v bad %q", bad, ok, b)
		}
	}
}
