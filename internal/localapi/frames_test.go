package localapi

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/openssi/openssi/internal/execwire"
)

// framePair returns both ends of a Unix stream socket pair.
func framePair(t testing.TB) (*FrameConn, *FrameConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *FrameConn {
		c, err := UnixConnOf(fd)
		if err != nil {
			t.Fatal(err)
		}
		return NewFrameConn(c)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestFrames(t *testing.T) {
	a, b := framePair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	go func() {
		_ = a.Write(execwire.KindInput, []byte("first"), []*os.File{r, w})
		_ = a.Write(execwire.KindInput, nil, nil)
		_ = a.Write(execwire.KindInput, make([]byte, 1<<20), nil)
		a.Close()
	}()
	kind, msg, files, err := b.Read()
	if err != nil || kind != execwire.KindInput || string(msg) != "first" || len(files) != 2 {
		t.Fatalf("first frame: %d %q %d files %v", kind, msg, len(files), err)
	}
	for _, f := range files {
		f.Close()
	}
	if _, msg, _, err := b.Read(); err != nil || len(msg) != 0 {
		t.Fatalf("empty frame: %q %v", msg, err)
	}
	if _, msg, _, err := b.Read(); err != nil || len(msg) != 1<<20 {
		t.Fatalf("large frame: %d bytes %v", len(msg), err)
	}
	if _, _, _, err := b.Read(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

// TestFramesLaterFilesRefused: descriptors only come with the first
// frame.
func TestFramesLaterFilesRefused(t *testing.T) {
	a, b := framePair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	go func() {
		_ = a.Write(execwire.KindInput, []byte("first"), nil)
		_ = a.Write(execwire.KindInput, []byte("second"), []*os.File{r})
	}()
	if _, _, _, err := b.Read(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.Read(); !errors.Is(err, ErrFilesRefused) {
		t.Fatalf("files on the second frame: %v, want ErrFilesRefused", err)
	}
}

// FuzzFrameRead: whatever a caller writes, Read returns frames within
// bounds or an error, and never panics.
func FuzzFrameRead(f *testing.F) {
	f.Add(execwire.AppendStartFrame(nil, execwire.Start{Argv: []string{"true"}}))
	f.Add([]byte{0, 0, 0, 1, 2, 0, 0, 0, 2, 9, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := framePair(t)
		go func() {
			_, _ = a.Conn().Write(in)
			a.Close()
		}()
		for {
			kind, msg, files, err := b.Read()
			if err != nil {
				return
			}
			if kind < execwire.KindInput || kind > execwire.KindStatus || len(msg) > execwire.MaxMessage || len(files) != 0 {
				t.Fatalf("frame kind %d, %d bytes, %d files", kind, len(msg), len(files))
			}
		}
	})
}
