package vproc

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// TestResumeLost: an exec whose vprocd closes the connection after the
// start ends with ExitLost and the line ssi's early start prints too.
func TestResumeLost(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		c, err := localapi.UnixConnOf(fd)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mine, vprocd := conn(fds[0]), conn(fds[1])
	started, _ := proto.Marshal(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: 7}}})
	go func() {
		_ = localapi.NewFrameConn(vprocd).Write(execwire.KindOutput, started, nil)
		vprocd.Close()
	}()
	p, err := Resume(context.Background(), SentExec{Conn: mine, Socket: "/run/openssi/vprocd.sock"}, Cmd{Stdout: new(nopWriter), Stderr: new(nopWriter)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	want := "vproc: lost the program's node or connection: vprocd closed the connection"
	if st.Code != ExitLost || !errors.Is(err, ErrLost) || err.Error() != want {
		t.Errorf("status %+v, error %v; want %d and %q", st, err, ExitLost, want)
	}
}

type nopWriter struct{}

func (*nopWriter) Write(b []byte) (int, error) { return len(b), nil }
