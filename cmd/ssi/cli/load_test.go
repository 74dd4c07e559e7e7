package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/server"
	"github.com/openssi/openssi/internal/localapi"
)

// levels is a runtime list of programs placed by load, in memory.
type levels struct {
	mu    sync.Mutex
	names []string
}

func (l *levels) List(context.Context) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.names...), nil
}

func (l *levels) Add(_ context.Context, n string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, n)
	return nil
}

func (l *levels) Remove(_ context.Context, n string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.names {
		if x == n {
			l.names = append(l.names[:i], l.names[i+1:]...)
		}
	}
	return nil
}

// startLoadVprocd serves a one-node vprocd measuring its load every 10ms,
// with "make" in its openssi.yaml list; it returns the run directory once
// the node has measured.
func startLoadVprocd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := server.New(server.Config{Node: 1, Log: log,
		Load: server.LoadConfig{Interval: 10 * time.Millisecond, LoadLevel: []string{"make"}, Levels: &levels{}}})
	srv.Membership(1, true)
	ln, _, err := localapi.Listen(filepath.Join(dir, "vprocd.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	server.NewAPI(srv).Register(g)
	go func() { _ = g.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.RunLoad(ctx) }()
	t.Cleanup(func() { cancel(); <-done; g.Stop() })
	c, err := vproc.New(ctx, vproc.WithSocket(filepath.Join(dir, "vprocd.sock")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		v, err := c.Loads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Loads) > 0 {
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatal("vprocd measured no load")
		}
	}
}

func run(dir string, args ...string) (code int, out, errs string) {
	var o, e bytes.Buffer
	code = Main(append([]string{"--run-dir", dir}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestNodesLoad(t *testing.T) {
	dir := startLoadVprocd(t)
	code, out, errs := run(dir, "nodes", "-o", "load")
	if code != 0 {
		t.Fatalf("ssi nodes -o load: %d %s", code, errs)
	}
	lines := strings.Split(out, "\n")
	if !regexp.MustCompile(`^NODE +RUNQ +LOAD1 +CPUS +FREE +AGE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^1\* +\d+\.\d\d +\d+\.\d\d +\d+ +[0-9.]+[KMGTPE]i +\d+\.\ds$`).MatchString(lines[1]) {
		t.Errorf("ssi nodes -o load:\n%s", out)
	}
	if code, _, _ := run(dir, "nodes", "-o", "yaml"); code != exitUsage {
		t.Errorf("ssi nodes -o yaml: %d, want %d", code, exitUsage)
	}
}

func TestExecAuto(t *testing.T) {
	dir := startLoadVprocd(t)
	if code, out, errs := run(dir, "exec", "--auto", "--", "echo", "hi"); code != 0 || out != "hi\n" {
		t.Errorf("ssi exec --auto: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(dir, "exec", "--auto", "-n", "1", "--", "true"); code != exitUsage {
		t.Errorf("ssi exec --auto -n 1: %d %q, want %d", code, errs, exitUsage)
	}
}

func TestLoadLevelCommand(t *testing.T) {
	dir := startLoadVprocd(t)
	if os.Geteuid() != 0 {
		if code, _, errs := run(dir, "loadlevel", "add", "gcc"); code != exitError || !strings.Contains(errs, "only root") {
			t.Errorf("ssi loadlevel add as uid %d: %d %q", os.Geteuid(), code, errs)
		}
		return
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"add", "gcc"}, 0, ""},
		{[]string{"list"}, 0, "PROGRAM  REGISTERED IN\nmake     openssi.yaml\ngcc      ssi loadlevel add\n"},
		{[]string{"add", "/usr/bin/gcc"}, exitError, ""},
		{[]string{"remove", "make"}, exitError, ""},
		{[]string{"remove", "gcc"}, 0, ""},
		{[]string{"list"}, 0, "PROGRAM  REGISTERED IN\nmake     openssi.yaml\n"},
		{[]string{"add"}, exitUsage, ""},
		{nil, exitUsage, ""},
	} {
		code, out, errs := run(dir, append([]string{"loadlevel"}, tc.args...)...)
		if code != tc.code || out != tc.out {
			t.Errorf("ssi loadlevel %q: %d %q %q, want %d %q", tc.args, code, out, errs, tc.code, tc.out)
		}
	}
}
