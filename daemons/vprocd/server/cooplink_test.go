package server

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/coop"
)

// TestCoopLinkHelper is the program of TestCoopLink when run as a helper:
// it speaks the protocol's start and one checkpoint with raw frames.
func TestCoopLinkHelper(t *testing.T) {
	path := os.Getenv("COOPLINK_HELPER")
	if path == "" {
		t.Skip("only as TestCoopLink's helper")
	}
	c, err := net.Dial("unix", os.Getenv(coop.EnvSocket))
	if err != nil {
		os.Exit(10)
	}
	must := func(want coop.Type) {
		if f, err := coop.Read(c, coop.Limits{}); err != nil || f.Type != want {
			os.Exit(11)
		}
	}
	_ = coop.Write(c, coop.HelloFrame(), coop.Limits{})
	must(coop.Start)
	must(coop.Checkpoint)
	_ = coop.Write(c, coop.Frame{Type: coop.State, Payload: []byte("abc")}, coop.Limits{})
	must(coop.Resume)
	os.Exit(0)
}

// TestCoopLink: the checkpoint socket takes only the process it was made
// for (SO_PEERCRED): another process's connection is closed unanswered,
// even one that says Hello; the program's gets Start, and a checkpoint
// returns its state.
func TestCoopLink(t *testing.T) {
	l, err := newCoopLink(t.TempDir(), uint32(os.Getuid()), uint32(os.Getgid()), coop.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if st, err := os.Stat(l.dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the socket's directory: %v, %v; want mode 0700", st.Mode(), err)
	}
	// Another process (this one) connects first, and says Hello.
	intruder, err := net.Dial("unix", l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	_ = coop.Write(intruder, coop.HelloFrame(), coop.Limits{})
	cmd := exec.Command(os.Args[0], "-test.run=^TestCoopLinkHelper$")
	cmd.Env = append(os.Environ(), "COOPLINK_HELPER=1")
	cmd.Env = append(cmd.Env, l.env(false)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() { accepted <- l.accept(cmd.Process.Pid, nil) }()
	_ = intruder.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(intruder); len(b) != 0 {
		t.Errorf("the intruder got %q, %v; want its connection closed unanswered", b, err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	state, err := l.checkpoint(10 * time.Second)
	if err != nil || !bytes.Equal(state, []byte("abc")) {
		t.Fatalf("checkpoint = %q, %v", state, err)
	}
	if err := l.resume(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the helper: %v", err)
	}
	if _, err := os.Stat(l.dir); !os.IsNotExist(err) {
		t.Errorf("the socket's directory outlived the connection: %v", err)
	}
}
