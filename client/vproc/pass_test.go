package vproc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPassable(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(sp[0]), "socket")
	defer sock.Close()
	defer unix.Close(sp[1])
	// A terminal: the master side of a new pty.
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skip("no /dev/ptmx:", err)
	}
	defer ptm.Close()

	var buf bytes.Buffer
	for _, tc := range []struct {
		name  string
		cmd   Cmd
		files []*os.File
		mask  uint32
	}{
		{"pipes", Cmd{PassFiles: true, Stdin: r, Stdout: w, Stderr: w}, []*os.File{r, w, w}, 7},
		{"not asked", Cmd{Stdin: r, Stdout: w, Stderr: w}, nil, 0},
		// vprocd is root: a regular file is written by this process.
		{"a regular file out", Cmd{PassFiles: true, Stdout: file}, nil, 0},
		{"pipe ends the wrong way round", Cmd{PassFiles: true, Stdin: w, Stdout: r}, nil, 0},
		{"stderr only", Cmd{PassFiles: true, Stdout: &buf, Stderr: w}, []*os.File{w}, 4},
		{"a terminal", Cmd{PassFiles: true, Stdin: ptm, Stdout: ptm, Stderr: w}, []*os.File{w}, 4},
		{"a socket and a device", Cmd{PassFiles: true, Stdin: null, Stdout: sock}, nil, 0},
		{"with a terminal on the target", Cmd{PassFiles: true, TTY: true, Stdin: r, Stdout: w}, nil, 0},
		{"detached", Cmd{PassFiles: true, Detach: true, Stdout: w}, nil, 0},
	} {
		files, mask := passable(tc.cmd)
		if mask != tc.mask || len(files) != len(tc.files) {
			t.Errorf("%s: %d files mask %d, want %d mask %d", tc.name, len(files), mask, len(tc.files), tc.mask)
			continue
		}
		for i := range files {
			if files[i] != tc.files[i] {
				t.Errorf("%s: file %d is %s, want %s", tc.name, i, files[i].Name(), tc.files[i].Name())
			}
		}
	}
}
