package lab

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveFixture is a repository, a consul "binary" and a fake Debian
// mirror that records the paths asked of it.
type serveFixture struct {
	h      *serveHandler
	repo   string
	asked  []string
	consul []byte
}

func newServeFixture(t *testing.T) *serveFixture {
	t.Helper()
	dir := t.TempDir()
	f := &serveFixture{repo: filepath.Join(dir, "repo"), consul: []byte("#!/bin/sh\necho consul\n")}
	for rel, content := range map[string]string{
		"apt/dists/stable/InRelease":          "signed release",
		"apt/pool/main/openssi_1.0_amd64.deb": "deb 1.0",
		"openssi-archive-keyring.gpg":         "key",
	} {
		p := filepath.Join(f.repo, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "consul")
	if err := os.WriteFile(bin, f.consul, 0o755); err != nil {
		t.Fatal(err)
	}
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.asked = append(f.asked, r.URL.Path)
		io.WriteString(w, "mirror:"+r.URL.Path)
	}))
	t.Cleanup(mirror.Close)
	h, err := newServeHandler(f.repo, bin, mirror.URL+"/debian")
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

func (f *serveFixture) get(method, path string) (int, string) {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestServeRoutes(t *testing.T) {
	f := newServeFixture(t)
	for _, c := range []struct {
		method, path string
		code         int
		body         string // "" = not checked
	}{
		{"GET", "/openssi/apt/dists/stable/InRelease", 200, "signed release"},
		{"GET", "/openssi/apt/pool/main/openssi_1.0_amd64.deb", 200, "deb 1.0"},
		{"GET", "/openssi/openssi-archive-keyring.gpg", 200, "key"},
		{"HEAD", "/openssi/openssi-archive-keyring.gpg", 200, ""},
		{"GET", "/openssi/apt/nothing", 404, ""},
		// No directory listings: apt and dnf never ask for them.
		{"GET", "/openssi/apt/pool/main/", 404, ""},
		{"GET", "/openssi/", 404, ""},
		{"GET", "/consul/consul", 200, string(f.consul)},
		{"GET", "/consul/other", 404, ""},
		{"GET", "/debian/dists/bookworm/InRelease", 200, "mirror:/debian/dists/bookworm/InRelease"},
		{"GET", "/debian-security/dists/bookworm-security/InRelease", 200, "mirror:/debian-security/dists/bookworm-security/InRelease"},
		// Nothing else of this machine is served.
		{"GET", "/", 404, ""},
		{"GET", "/etc/passwd", 404, ""},
		{"GET", "/openssi/../../etc/passwd", 404, ""},
		{"POST", "/openssi/openssi-archive-keyring.gpg", 405, ""},
		{"PUT", "/debian/x", 405, ""},
	} {
		code, body := f.get(c.method, c.path)
		if code != c.code {
			t.Errorf("%s %s: %d, want %d (%q)", c.method, c.path, code, c.code, body)
		}
		if c.body != "" && body != c.body {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, body, c.body)
		}
	}
	for _, p := range f.asked {
		if !strings.HasPrefix(p, "/debian/") && !strings.HasPrefix(p, "/debian-security/") {
			t.Errorf("the mirror was asked for %s", p)
		}
	}
}

// TestServeConsulZip: the zip holds the binary as HashiCorp's release zip
// does (one executable file "consul"), and SHA256SUMS names it with its
// digest.
func TestServeConsulZip(t *testing.T) {
	f := newServeFixture(t)
	code, z := f.get("GET", "/consul/"+consulZipName())
	if code != 200 {
		t.Fatalf("zip: %d", code)
	}
	zr, err := zip.NewReader(bytes.NewReader([]byte(z)), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "consul" || zr.File[0].Mode().Perm()&0o111 == 0 {
		t.Fatalf("zip holds %v, want one executable consul", zr.File)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, f.consul) {
		t.Fatalf("zipped consul differs from the binary")
	}
	code, sums := f.get("GET", "/consul/"+ConsulSumsName())
	sum := sha256.Sum256([]byte(z))
	if want := hex.EncodeToString(sum[:]) + "  " + consulZipName() + "\n"; code != 200 || sums != want {
		t.Fatalf("SHA256SUMS: %d %q, want %q", code, sums, want)
	}
}

func TestServeSetRepo(t *testing.T) {
	f := newServeFixture(t)
	newer := t.TempDir()
	if err := os.MkdirAll(filepath.Join(newer, "apt/dists/stable"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(newer, "apt/dists/stable/InRelease"), []byte("newer release"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.h.setRepo(newer)
	if _, body := f.get("GET", "/openssi/apt/dists/stable/InRelease"); body != "newer release" {
		t.Fatalf("after SetRepo: %q", body)
	}
}

func TestServeMirrorURL(t *testing.T) {
	for _, bad := range []string{"", "deb.debian.org/debian", "::"} {
		if _, err := newServeHandler(t.TempDir(), os.Args[0], bad); err == nil {
			t.Errorf("mirror %q accepted", bad)
		}
	}
}

func TestServerCommand(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{append([]string{"/usr/bin/lab"}, ServerArgs("/var/lib/openssi-lab")...), true},
		{append(append([]string{"bin/lab"}, ServerArgs("/var/lib/openssi-lab")...), "--subnet=10.77.0"), true},
		{append([]string{"bin/lab"}, ServerArgs("/tmp/other")...), false},
		{[]string{"bin/lab", "serve"}, false},
		{[]string{"sleep", "100"}, false},
		{nil, false},
	} {
		if got := ServerCommand(c.argv, "/var/lib/openssi-lab"); got != c.want {
			t.Errorf("ServerCommand(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}

func TestBareFiles(t *testing.T) {
	s := bareState(3)
	files := bareFiles(s.Nodes[1], s.Nodes, ServedAt(s.Subnet), "ssh-ed25519 AAAA lab\n")
	for rel, want := range map[string][]string{
		"etc/hostname":                           {"node2\n"},
		"etc/hosts":                              {"10.77.0.11\tnode1", "10.77.0.13\tnode3"},
		"etc/systemd/network/10-host0.network":   {"Address=10.77.0.12/24"},
		"etc/apt/sources.list.d/debian.sources":  {"URIs: http://10.77.0.1:8077/debian\n", "URIs: http://10.77.0.1:8077/debian-security\n", "Suites: bookworm bookworm-updates"},
		"etc/ssh/sshd_config.d/openssi-lab.conf": {"PasswordAuthentication no", "PermitRootLogin prohibit-password", "HostKey /etc/ssh/ssh_host_ed25519_key"},
		"root/.ssh/authorized_keys":              {"ssh-ed25519 AAAA lab\n"},
	} {
		f, ok := files[rel]
		if !ok {
			t.Errorf("no %s", rel)
			continue
		}
		for _, w := range want {
			if !strings.Contains(f.content, w) {
				t.Errorf("%s lacks %q:\n%s", rel, w, f.content)
			}
		}
	}
	if m := files["root/.ssh/authorized_keys"].mode; m != 0o600 {
		t.Errorf("authorized_keys mode %o", m)
	}
	// A bare node has neither Consul nor openssi.
	for rel := range files {
		if strings.Contains(rel, "consul") || strings.Contains(rel, "openssi/") {
			t.Errorf("a bare node gets %s", rel)
		}
	}
}
