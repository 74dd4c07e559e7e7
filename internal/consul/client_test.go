package consul

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewClient(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("  s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr error // nil: success; errAny: any error
	}{
		{"defaults", Options{}, nil},
		{"address", Options{Address: "127.0.0.1:8500", Scheme: "http"}, nil},
		{"token file", Options{TokenFile: tokFile, Token: "ignored"}, nil},
		{"missing token file", Options{TokenFile: filepath.Join(dir, "nope")}, os.ErrNotExist},
		{"empty token file", Options{TokenFile: empty}, ErrConfig},
		{"bad scheme", Options{Scheme: "ftp"}, ErrConfig},
		{"cert without key", Options{Scheme: "https", CertFile: "/x.pem"}, ErrConfig},
		{"address with path", Options{Address: "host/path"}, ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("NewClient(%+v) error %v, want %v", tc.opts, err, tc.wantErr)
				}
				return
			}
			if err != nil || c == nil {
				t.Fatalf("NewClient(%+v) = %v, %v", tc.opts, c, err)
			}
		})
	}
	// The token from the file is what goes on the wire.
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Consul-Token")
		w.Write([]byte(`"127.0.0.1:8300"`))
	}))
	defer srv.Close()
	c, err := NewClient(Options{Address: strings.TrimPrefix(srv.URL, "http://"), TokenFile: tokFile, Token: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status().Leader(); err != nil {
		t.Fatal(err)
	}
	if tok := <-got; tok != "s3cr3t" {
		t.Fatalf("token sent %q, want %q", tok, "s3cr3t")
	}
	// A systemd credential wins over both.
	creds := filepath.Join(dir, "creds")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, TokenCredential), []byte("from-cred\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	c, err = NewClient(Options{Address: strings.TrimPrefix(srv.URL, "http://"), TokenFile: tokFile, Token: "ignored", CredentialsDir: creds})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status().Leader(); err != nil {
		t.Fatal(err)
	}
	if tok := <-got; tok != "from-cred" {
		t.Fatalf("token sent %q, want the credential's %q", tok, "from-cred")
	}
}

// An agent whose HTTP API is a Unix socket (addresses.http =
// "unix:///run/consul/http.sock", root-only) is reached with a unix://
// address, the token still sent.
func TestNewClientUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "http.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Consul-Token")
		w.Write([]byte(`"127.0.0.1:8300"`))
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	c, err := NewClient(Options{Address: "unix://" + sock, Token: "t0k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status().Leader(); err != nil {
		t.Fatal(err)
	}
	if tok := <-got; tok != "t0k" {
		t.Fatalf("token sent %q, want %q", tok, "t0k")
	}
}
