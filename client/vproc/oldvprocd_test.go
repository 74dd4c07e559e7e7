package vproc

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// oldVprocd answers Exec as a vprocd older than file passing: it reads
// the socket without taking passed files (the kernel drops them), never
// says it took any, and runs `cat`: stdin messages back as stdout.
type oldVprocd struct {
	vprocv1.UnimplementedVprocServer
}

func (oldVprocd) Exec(stream vprocv1.Vproc_ExecServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: 1<<22 | 7, Node: 1, Pid: 7}}}); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch k := m.Kind.(type) {
		case *vprocv1.ExecInput_Stdin:
			if err := stream.Send(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: k.Stdin}}); err != nil {
				return err
			}
		case *vprocv1.ExecInput_StdinEof:
			return stream.Send(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Exit{Exit: &vprocv1.Exit{}}})
		}
	}
}

// TestPassFilesOldVprocd: during an upgrade, a new client may meet the
// old vprocd for a moment. The files it passed are dropped there, so the
// client must stream them itself, or a program reading its stdin waits
// for ever.
func TestPassFilesOldVprocd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vprocd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	vprocv1.RegisterVprocServer(g, oldVprocd{})
	go func() { _ = g.Serve(l) }()
	defer g.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := New(ctx, WithSocket(sock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	p, err := c.Exec(ctx, 1, Cmd{Args: []string{"cat"}, PassFiles: true, Stdin: inR, Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inW.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	inW.Close()
	st, err := p.Wait()
	outW.Close()
	if err != nil {
		t.Fatalf("Wait: %v (the client did not stream the stdin the old vprocd dropped)", err)
	}
	if got, err := io.ReadAll(outR); err != nil || string(got) != "hello\n" {
		t.Errorf("stdout %q (%v), want \"hello\\n\"; status %+v", got, err, st)
	}
}
