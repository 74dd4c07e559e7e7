package early

import (
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Parsed
		ok   bool
	}{
		{[]string{"--", "true"}, Parsed{Args: []string{"true"}}, true},
		{[]string{"-n", "2", "--", "sh", "-c", "x"}, Parsed{Node: 2, Args: []string{"sh", "-c", "x"}}, true},
		{[]string{"-n2", "-e", "A=1", "--env=B=2", "-C", "/tmp", "--", "ls", "--", "-l"}, Parsed{Node: 2, Sets: []string{"A=1", "B=2"}, Dir: "/tmp", Args: []string{"ls", "--", "-l"}}, true},
		{[]string{"--node", "3", "--node=4", "-n=5", "--dir", "a", "-Cb", "--", "x"}, Parsed{Node: 5, Dir: "b", Args: []string{"x"}}, true},
		{[]string{"-e", "-x", "--", "x"}, Parsed{Sets: []string{"-x"}, Args: []string{"x"}}, true},
		// Left to ssi:
		{[]string{"true"}, Parsed{}, false},
		{[]string{"--"}, Parsed{}, false},
		{[]string{"--", ""}, Parsed{}, false},
		{[]string{"-t", "--", "vi"}, Parsed{}, false},
		{[]string{"-tn2", "--", "vi"}, Parsed{}, false},
		{[]string{"--detach", "--", "x"}, Parsed{}, false},
		{[]string{"--auto", "--", "x"}, Parsed{}, false},
		{[]string{"--migratable", "--", "x"}, Parsed{}, false},
		{[]string{"--help"}, Parsed{}, false},
		{[]string{"-h", "--", "x"}, Parsed{}, false},
		{[]string{"--run-dir", "/x", "--", "x"}, Parsed{}, false},
		{[]string{"-n", "-1", "--", "x"}, Parsed{}, false},
		{[]string{"-n", "0x2", "--", "x"}, Parsed{}, false},
		{[]string{"-n", "010", "--", "x"}, Parsed{}, false},
		{[]string{"-n", "1234567890", "--", "x"}, Parsed{}, false},
		{[]string{"-n"}, Parsed{}, false},
		{[]string{"-n", "--", "x"}, Parsed{}, false},
		{[]string{"--node=", "--", "x"}, Parsed{}, false},
		{[]string{"-", "--", "x"}, Parsed{}, false},
		{[]string{"--n", "2", "--", "x"}, Parsed{}, false},
		{[]string{"-C=", "--", "x"}, Parsed{Dir: "=", Args: []string{"x"}}, true},
	} {
		got, ok := Parse(tc.args)
		if ok != tc.ok || (ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("Parse(%q) = %+v %v, want %+v %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
}

// TestStartSends: the request start sends is the exec of the command
// line with this process's environment (and -e), directory and the
// stdio it may pass, its pipes going with it.
func TestStartSends(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "vprocd-exec.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("OPENSSI_CLUSTER_RUN_DIR", dir)
	t.Setenv("EARLY_TEST", "old")
	wd, _ := os.Getwd()

	// stdin a pipe's read end, stdout a pipe's write end, stderr a
	// regular file (not passed).
	r0, w0, _ := os.Pipe()
	r1, w1, _ := os.Pipe()
	f2, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r0.Close(); w0.Close(); r1.Close(); w1.Close(); f2.Close() }()
	restore := swapStdio(t, r0, w1, f2)
	e := start([]string{"-n", "2", "-e", "EARLY_TEST=new", "--", "sh", "-c", "exit 0"})
	restore()
	if e == nil {
		t.Fatal("start sent nothing")
	}
	defer closeFD(e.FD)
	defer signal.Stop(e.Signals)
	if e.Passed != 3 {
		t.Errorf("passed %b, want stdin and stdout (11)", e.Passed)
	}
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kind, msg, files, err := localapi.NewFrameConn(c).Read()
	if err != nil || kind != execwire.KindInput {
		t.Fatalf("read: kind %d %v", kind, err)
	}
	if len(files) != 2 {
		t.Fatalf("%d files came with the request, want 2", len(files))
	}
	for _, f := range files {
		f.Close()
	}
	in := &vprocv1.ExecInput{}
	if err := proto.Unmarshal(msg, in); err != nil {
		t.Fatal(err)
	}
	req := in.GetStart()
	env, _, _ := execwire.MergeEnv(os.Environ(), []string{"EARLY_TEST=new"})
	want := &vprocv1.ExecRequest{Node: 2, Argv: bytesOf([]string{"sh", "-c", "exit 0"}), Env: bytesOf(env), Cwd: []byte(wd), PassedStdio: 3}
	if !proto.Equal(req, want) {
		t.Errorf("request %v\nwant %v", req, want)
	}
}

// TestStartWithoutSocket: no exec socket, nothing started (ssi then
// starts the exec itself).
func TestStartWithoutSocket(t *testing.T) {
	t.Setenv("OPENSSI_CLUSTER_RUN_DIR", t.TempDir())
	if e := start([]string{"--", "true"}); e != nil {
		t.Errorf("started %+v with no socket", e)
	}
}

// TestImports: see the package doc.
func TestImports(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "early.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range f.Imports {
		switch im.Path.Value {
		case `"os"`, `"os/signal"`, `"syscall"`, `"github.com/openssi/openssi/internal/execwire"`, `"github.com/openssi/openssi/internal/procself"`:
		default:
			t.Errorf("early.go imports %s", im.Path.Value)
		}
	}
}

// swapStdio makes descriptors 0, 1 and 2 the files given, until restore.
func swapStdio(t *testing.T, in, out, errf *os.File) (restore func()) {
	t.Helper()
	var saved [3]int
	for i, f := range []*os.File{in, out, errf} {
		s, err := dup(i)
		if err != nil {
			t.Fatal(err)
		}
		saved[i] = s
		if err := dup2(int(f.Fd()), i); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		for i, s := range saved {
			_ = dup2(s, i)
			closeFD(s)
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

func dup(fd int) (int, error) { return syscall.Dup(fd) }
func dup2(from, to int) error { return syscall.Dup3(from, to, 0) }
func closeFD(fd int)          { _ = syscall.Close(fd) }
