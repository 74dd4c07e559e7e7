package execwire_test

import (
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// outputOf is what protobuf decodes, as DecodeOutput says it.
func outputOf(m *vprocv1.ExecOutput) execwire.Output {
	switch k := m.Kind.(type) {
	case *vprocv1.ExecOutput_Started:
		s := k.Started
		return execwire.Output{Kind: execwire.OutStarted, Cpid: s.GetCpid(), Node: s.GetNode(), Pid: s.GetPid(), PassedStdio: s.GetPassedStdio()}
	case *vprocv1.ExecOutput_Stdout:
		return execwire.Output{Kind: execwire.OutStdout, Data: k.Stdout}
	case *vprocv1.ExecOutput_Stderr:
		return execwire.Output{Kind: execwire.OutStderr, Data: k.Stderr}
	case *vprocv1.ExecOutput_Exit:
		e := k.Exit
		return execwire.Output{Kind: execwire.OutExit, Code: e.GetCode(), Signal: e.GetSignal(), Reason: e.GetReason()}
	case *vprocv1.ExecOutput_Moved:
		return execwire.Output{Kind: execwire.OutMoved}
	}
	return execwire.Output{}
}

func sameOutput(a, b execwire.Output) bool {
	return a.Kind == b.Kind && a.Cpid == b.Cpid && a.Node == b.Node && a.Pid == b.Pid && a.PassedStdio == b.PassedStdio &&
		string(a.Data) == string(b.Data) && a.Code == b.Code && a.Signal == b.Signal && a.Reason == b.Reason
}

var outputSeeds = []*vprocv1.ExecOutput{
	{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: 4196306, Node: 2, Pid: 1234, PassedStdio: 7}}},
	{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: -1, Pid: -5}}},
	{Kind: &vprocv1.ExecOutput_Stdout{Stdout: []byte("hello\n")}},
	{Kind: &vprocv1.ExecOutput_Stderr{Stderr: []byte{0, 0xff}}},
	{Kind: &vprocv1.ExecOutput_Exit{Exit: &vprocv1.Exit{Code: 255, Signal: 9, Reason: "node 2 went DOWN"}}},
	{Kind: &vprocv1.ExecOutput_Exit{Exit: &vprocv1.Exit{Code: -3}}},
	{Kind: &vprocv1.ExecOutput_Moved{Moved: &vprocv1.Moved{Node: 3, Move: "1.2.3"}}},
	{},
}

func TestDecodeOutput(t *testing.T) {
	for _, m := range outputSeeds {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := execwire.DecodeOutput(b)
		if err != nil || !sameOutput(got, outputOf(m)) {
			t.Errorf("%v: decoded %+v %v", m, got, err)
		}
	}
	for _, bad := range [][]byte{{0x0a}, {0x0a, 5, 1}, {0x08}, {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, {0x0e}, {0x00, 0x01}} {
		if _, err := execwire.DecodeOutput(bad); err == nil {
			t.Errorf("%x: decoded", bad)
		}
	}
}

// FuzzDecodeOutput: what protobuf decodes, DecodeOutput decodes the same
// (it may take more: a reason that is not UTF-8, a group's bad end).
func FuzzDecodeOutput(f *testing.F) {
	for _, m := range outputSeeds {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c, 0x12, 0x01, 'x'}) // a group, then stdout
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := execwire.DecodeOutput(b)
		m := &vprocv1.ExecOutput{}
		if perr := proto.Unmarshal(b, m); perr != nil {
			return
		}
		if err != nil {
			t.Fatalf("%x: protobuf decodes %v, DecodeOutput fails: %v", b, m, err)
		}
		if want := outputOf(m); !sameOutput(got, want) {
			t.Fatalf("%x: decoded %+v, protobuf %+v", b, got, want)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	b, _ := proto.Marshal(&spb.Status{Code: 9, Message: "vproc: node 2 is DOWN"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		code, msg, err := execwire.DecodeStatus(b)
		st := &spb.Status{}
		if perr := proto.Unmarshal(b, st); perr != nil {
			return
		}
		if err != nil || code != st.Code || msg != st.Message {
			t.Fatalf("%x: decoded %d %q %v, protobuf %v", b, code, msg, err, st)
		}
	})
}

// TestInputFrames: the later frames decode as the ExecInput they stand
// for.
func TestInputFrames(t *testing.T) {
	for _, tc := range []struct {
		frame []byte
		want  *vprocv1.ExecInput
	}{
		{execwire.AppendStdinFrame(nil, []byte("abc")), &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: []byte("abc")}}},
		{execwire.AppendStdinFrame(nil, nil), &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: []byte{}}}},
		{execwire.AppendStdinEOFFrame(nil), &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}},
		{execwire.AppendSignalFrame(nil, 15), &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: 15}}},
	} {
		var h [execwire.HeaderSize]byte
		copy(h[:], tc.frame)
		kind, n, err := execwire.ParseHeader(h)
		if err != nil || kind != execwire.KindInput || n != len(tc.frame)-execwire.HeaderSize {
			t.Fatalf("%x: header %d %d %v", tc.frame, kind, n, err)
		}
		got := &vprocv1.ExecInput{}
		if err := proto.Unmarshal(tc.frame[execwire.HeaderSize:], got); err != nil || !proto.Equal(got, tc.want) {
			t.Errorf("%x: decodes as %v (%v), want %v", tc.frame, got, err, tc.want)
		}
	}
}
