package server

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageTar: an image dumped goes through tar whole, and an image a
// peer sends is unpacked only as plain files of the directory it gets.
func TestImageTar(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"core-42.img": "core", "pages-1.img": strings.Repeat("p", 70000), stdioName: "pipe:[1]\npipe:[2]\npipe:[3]\n"}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img, err := tarDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := untarDir(img, dst); err != nil {
		t.Fatal(err)
	}
	for n, b := range files {
		if got, err := os.ReadFile(filepath.Join(dst, n)); err != nil || string(got) != b {
			t.Errorf("%s: %d bytes, %v; want %d", n, len(got), err, len(b))
		}
	}

	entry := func(h tar.Header, body string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
		_ = tw.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name string
		img  []byte
	}{
		{"a path out of the directory", entry(tar.Header{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o600}, "x")},
		{"an absolute path", entry(tar.Header{Name: "/etc/escaped", Typeflag: tar.TypeReg, Mode: 0o600}, "x")},
		{"a subdirectory", entry(tar.Header{Name: "d/x", Typeflag: tar.TypeReg, Mode: 0o600}, "x")},
		{"a symlink", entry(tar.Header{Name: "core-1.img", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, "")},
		{"not a tar", []byte("hello, this is not a tar archive at all; it goes on for a while......................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................")},
	} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "img"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := untarDir(tc.img, filepath.Join(dir, "img")); err == nil {
			t.Errorf("%s: unpacked", tc.name)
		}
		if _, err := os.Stat(filepath.Join(dir, "escaped")); err == nil {
			t.Errorf("%s: wrote out of its directory", tc.name)
		}
	}
}

// TestSameUser: a restored program is kept only when it runs as the user
// the move names.
func TestSameUser(t *testing.T) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if err := sameUser(os.Getpid(), uid, gid); err != nil {
		t.Errorf("this process as itself: %v", err)
	}
	if err := sameUser(os.Getpid(), uid+4242, gid); err == nil || !strings.Contains(err.Error(), "runs with Uid") {
		t.Errorf("this process as another uid: %v", err)
	}
	if err := sameUser(os.Getpid(), uid, gid+4242); err == nil || !strings.Contains(err.Error(), "runs with Gid") {
		t.Errorf("this process as another gid: %v", err)
	}
	if err := sameUser(1<<30, uid, gid); err == nil {
		t.Error("a process that does not exist passed")
	}
}

// FuzzUntarDir: whatever image a peer sends, untarDir writes nothing but
// regular files directly in the directory it gets (no subdirectory, link
// or file beside it), or refuses.
func FuzzUntarDir(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "core-1.img", Mode: 0o600, Size: 4, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("core"))
	_ = tw.WriteHeader(&tar.Header{Name: "../x", Mode: 0o600, Typeflag: tar.TypeReg})
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, image []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "img")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = untarDir(image, dir)
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("untarDir wrote beside its directory: %v", ents)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				t.Fatalf("untarDir made %s, not a regular file (%v)", e.Name(), e.Type())
			}
		}
	})
}
