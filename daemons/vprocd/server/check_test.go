package server

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	cpidpkg "github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/straceargs"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

func b(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}

// many is n copies of s.
func many(s string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(s)
	}
	return out
}

func TestCheckRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *vprocv1.ExecRequest
		bad  string
	}{
		{"ok", &vprocv1.ExecRequest{Argv: b("ls", "-l"), Env: b("A=1", "B=")}, ""},
		{"binary argv", &vprocv1.ExecRequest{Argv: b("echo", "\xff\xfe")}, ""},
		{"none", nil, "first message"},
		{"no command", &vprocv1.ExecRequest{}, "no command"},
		{"trace", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("-f")}}, ""},
		{"trace and a command", &vprocv1.ExecRequest{Argv: b("id"), Trace: &vprocv1.Trace{Cpid: 4194305}}, "with a command"},
		{"trace of no cpid", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 0}}, "not a cluster pid"},
		{"trace running a command", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("-f", "ls")}}, "runs no command"},
		{"trace of another pid", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("-p1")}}, "attaches to CPID only"},
		{"empty command", &vprocv1.ExecRequest{Argv: b("")}, "no command"},
		{"NUL in argv", &vprocv1.ExecRequest{Argv: b("a\x00b")}, "NUL"},
		{"NUL in env", &vprocv1.ExecRequest{Argv: b("a"), Env: b("A=\x00")}, "NUL"},
		{"env without =", &vprocv1.ExecRequest{Argv: b("a"), Env: b("A")}, "KEY=VALUE"},
		{"env without key", &vprocv1.ExecRequest{Argv: b("a"), Env: b("=1")}, "KEY=VALUE"},
		{"NUL in cwd", &vprocv1.ExecRequest{Argv: b("a"), Cwd: []byte("/\x00")}, "NUL"},
		{"huge window", &vprocv1.ExecRequest{Argv: b("a"), Size: &vprocv1.WindowSize{Rows: 1 << 16}}, "too large"},
		{"too long", &vprocv1.ExecRequest{Argv: b("a", strings.Repeat("x", MaxArgBytes))}, "more than"},
		{"trace piping to a command", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("-fo|cat")}}, "pipe its output to a command"},
		{"trace with --output=!cmd", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("--output=!cat")}}, "pipe its output to a command"},
		{"trace as another user", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("-u", "nobody")}}, "runs none"},
		{"trace with a command's env", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("--env=A=1")}}, "runs none"},
		// Bounds before the options are read: their count first, then
		// their bytes (a walk over 800,000 options once took 1.3s).
		{"trace with too many options", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: many("--x", 800_000)}}, "800000 strace options, more than 256"},
		{"trace with 257 options", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: many("-f", 257)}}, "257 strace options, more than 256"},
		{"trace with 256 options", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: many("-f", 256)}}, ""},
		{"stdio passed", &vprocv1.ExecRequest{Argv: b("cat"), PassedStdio: 7}, ""},
		{"stdout passed", &vprocv1.ExecRequest{Argv: b("cat"), PassedStdio: 2}, ""},
		{"a fourth file passed", &vprocv1.ExecRequest{Argv: b("cat"), PassedStdio: 8}, "only stdin"},
		{"stdio passed with a terminal", &vprocv1.ExecRequest{Argv: b("vi"), Tty: true, PassedStdio: 1}, "with a terminal or detached"},
		{"stdio passed detached", &vprocv1.ExecRequest{Argv: b("sleep"), Detach: true, PassedStdio: 2}, "with a terminal or detached"},
		{"trace options too long", &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: many(strings.Repeat("x", 1<<16), 40)}}, "more than"},
	} {
		err := CheckRequest(tc.req)
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.bad)
		}
	}
}

func TestCheckInput(t *testing.T) {
	for _, tc := range []struct {
		in *vprocv1.ExecInput
		ok bool
	}{
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: []byte("x")}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: make([]byte, MaxChunk+1)}}, false},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: 2}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: 9}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: 19}}, false}, // SIGSTOP
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: 0}}, false},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: -1}}, false},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Resize{Resize: &vprocv1.WindowSize{Rows: 10, Cols: 10}}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{Argv: b("a")}}}, false},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_OutputClosed{OutputClosed: passedStdout}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_OutputClosed{OutputClosed: passedStdout | passedStderr}}, true},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_OutputClosed{OutputClosed: 0}}, false},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_OutputClosed{OutputClosed: passedStdin}}, false},
		{&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_OutputClosed{OutputClosed: 8}}, false},
		{&vprocv1.ExecInput{}, false},
	} {
		if err := CheckInput(tc.in); (err == nil) != tc.ok {
			t.Errorf("%v: %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestCheckStart(t *testing.T) {
	req := &vprocv1.ExecRequest{Node: 2, Argv: b("a")}
	for _, tc := range []struct {
		s  *vprocpeerv1.Start
		ok bool
	}{
		{&vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{Uid: 5}, Request: req}, true},
		{nil, false},
		{&vprocpeerv1.Start{Origin: 1, Request: req}, false},
		{&vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{}, Request: &vprocv1.ExecRequest{Node: 3, Argv: b("a")}}, false},
		{&vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{Groups: make([]uint32, MaxGroups+1)}, Request: req}, false},
		{&vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{}, Request: &vprocv1.ExecRequest{Node: 2, Argv: b("a"), PassedStdio: 1}}, false},
	} {
		if err := CheckStart(tc.s, 2); (err == nil) != tc.ok {
			t.Errorf("%v: %v, want ok %v", tc.s, err, tc.ok)
		}
	}
}

func TestCPID(t *testing.T) {
	for _, tc := range []struct {
		node uint32
		pid  int
		want int64
	}{
		{1, 1, 1<<22 | 1},
		{2, 4194303, 2<<22 | 4194303},
		{511, 4194303, 1<<31 - 1},
	} {
		if got := CPID(tc.node, tc.pid); got != tc.want {
			t.Errorf("CPID(%d, %d) = %d, want %d", tc.node, tc.pid, got, tc.want)
		}
	}
}

// FuzzLocalInput decodes what a local caller sends and checks it as the
// local API does: no input may panic, and what passes is within bounds.
func FuzzLocalInput(f *testing.F) {
	for _, m := range []*vprocv1.ExecInput{
		{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{Node: 2, Argv: b("sh", "-c", "x"), Env: b("A=1"), Tty: true, Size: &vprocv1.WindowSize{Rows: 1, Cols: 2}}}},
		{Kind: &vprocv1.ExecInput_Stdin{Stdin: []byte("abc")}},
		{Kind: &vprocv1.ExecInput_Signal{Signal: 15}},
		{Kind: &vprocv1.ExecInput_Resize{Resize: &vprocv1.WindowSize{Rows: 70000}}},
		{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("-f", "-e", "trace=openat")}}}},
		{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{Argv: b("id"), Trace: &vprocv1.Trace{Cpid: 4194305, Args: b("--", "ls")}}}},
	} {
		raw, _ := proto.Marshal(m)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m vprocv1.ExecInput
		if proto.Unmarshal(raw, &m) != nil {
			return
		}
		if r := m.GetStart(); r != nil {
			if CheckRequest(r) == nil && (len(r.Argv) == 0 && r.Trace == nil || r.Size != nil && (r.Size.Rows > 0xffff || r.Size.Cols > 0xffff)) {
				t.Fatalf("accepted %v", r)
			}
			if tr := r.Trace; tr != nil && CheckRequest(r) == nil {
				// What is traced: one valid cpid, by strace given
				// options only.
				if len(r.Argv) != 0 || !cpidpkg.CPID(tr.Cpid).Valid() || straceargs.Check(strs(tr.Args)) != nil {
					t.Fatalf("accepted trace %v", r)
				}
			}
			return
		}
		if CheckInput(&m) == nil {
			if s, ok := m.Kind.(*vprocv1.ExecInput_Signal); ok && !allowedSignals[s.Signal] {
				t.Fatalf("accepted signal %d", s.Signal)
			}
		}
	})
}

// FuzzPeerInput decodes what a peer vprocd sends and checks it as the
// peer service does.
func FuzzPeerInput(f *testing.F) {
	for _, m := range []*vprocpeerv1.PeerExecInput{
		{Kind: &vprocpeerv1.PeerExecInput_Start{Start: &vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{Uid: 1000, Gid: 1000, Groups: []uint32{1, 2}},
			Request: &vprocv1.ExecRequest{Node: 2, Argv: b("id")}}}},
		{Kind: &vprocpeerv1.PeerExecInput_Input{Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}}},
	} {
		raw, _ := proto.Marshal(m)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m vprocpeerv1.PeerExecInput
		if proto.Unmarshal(raw, &m) != nil {
			return
		}
		if s := m.GetStart(); s != nil {
			if CheckStart(s, 2) == nil && (s.Caller == nil || s.Request.GetNode() != 2) {
				t.Fatalf("accepted %v", s)
			}
			return
		}
		_ = CheckInput(m.GetInput())
	})
}
