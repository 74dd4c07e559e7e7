package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/rootkey"
	"github.com/openssi/openssi/internal/rpc"
)

// TestPublishPin: a root daemon publishes its pin with the root token of
// cluster.consul.root_token_file, else (no file, or the setting empty)
// with the daemons' token; an empty root token file is a configuration
// error, and Consul's refusal ends the start at once, saying what the
// token needs, or that the file is missing when it is.
func TestPublishPin(t *testing.T) {
	type put struct{ token, path, body string }
	puts := make(chan put, 10)
	var deny atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		puts <- put{r.Header.Get("X-Consul-Token"), r.URL.Path, string(b)}
		if deny.Load() {
			http.Error(w, "Permission denied: token lacks permission 'key:write'", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte("true"))
	}))
	defer srv.Close()
	id, err := rpc.ParseSPIFFEID("spiffe://td.consul/ns/default/dc/dc1/svc/openssi-vprocd.Node1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		root      *string // the root token file's content; nil: no file
		setting   string  // root_token_file: "file" = the file, else as is
		deny      bool
		wantToken string
		wantCode  int
		wantErr   string
	}{
		{name: "root token", root: ptr("root-secret\n"), setting: "file", wantToken: "root-secret"},
		{name: "no file: the daemons' token", setting: "file", wantToken: "daemons-secret"},
		{name: "setting empty: the daemons' token", root: ptr("root-secret\n"), setting: `""`, wantToken: "daemons-secret"},
		{name: "empty file", root: ptr("\n"), setting: "file", wantCode: ExitConfig, wantErr: "root_token_file"},
		{name: "refused, no file", setting: "file", deny: true, wantToken: "daemons-secret", wantCode: ExitError,
			wantErr: "no root token file FILE: create it with `ssi consul policy --root Node1` (see packaging/README.md)\n"},
		{name: "refused, root token", root: ptr("root-secret\n"), setting: "file", deny: true, wantToken: "root-secret", wantCode: ExitError,
			wantErr: "needs the policy `ssi consul policy --root Node1` prints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deny.Store(tc.deny)
			dir := t.TempDir()
			file := filepath.Join(dir, "consul-root.token")
			if tc.root != nil {
				if err := os.WriteFile(file, []byte(*tc.root), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			setting := tc.setting
			if setting == "file" {
				setting = file
			}
			t.Setenv("CREDENTIALS_DIRECTORY", "")
			t.Setenv("CONSUL_HTTP_TOKEN", "")
			conf := filepath.Join(dir, "openssi.yaml")
			yaml := "cluster:\n  run_dir: " + dir + "\n  socket_group: \"\"\n  consul:\n    address: " + strings.TrimPrefix(srv.URL, "http://") +
				"\n    token: daemons-secret\n    root_token_file: " + setting + "\n"
			if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			var src *rpc.PinnedSource
			var stdout, stderr bytes.Buffer
			code := main(daemons.All[0], daemons.Sections(), []string{"--config", conf}, &stdout, &stderr, func(ctx context.Context, env *Env) error {
				root, missing, err := env.rootConsul()
				if err != nil {
					return err
				}
				src, err = rpc.NewPinnedSource(rpc.PinnedConfig{ID: id, Fetch: func(context.Context, string) (rootkey.Pin, bool, error) { return rootkey.Pin{}, false, nil }})
				if err != nil {
					return err
				}
				return env.publishPin(ctx, consul.NewKV(root), src, missing)
			})
			if wantErr := strings.ReplaceAll(tc.wantErr, "FILE", file); code != tc.wantCode || !strings.Contains(stderr.String(), wantErr) {
				t.Fatalf("exit %d, stderr %s; want %d and %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
			if tc.wantToken == "" {
				return
			}
			p := <-puts
			if p.token != tc.wantToken || p.path != "/v1/kv/openssi/rootkeys/node1/openssi-vprocd" {
				t.Fatalf("PUT %s with token %q; want the pin's key with %q", p.path, p.token, tc.wantToken)
			}
			pin, err := rootkey.Decode([]byte(p.body))
			if err != nil || pin != src.Pin() {
				t.Fatalf("published %q (%v), want %s", p.body, err, src.Pin())
			}
			if len(puts) != 0 {
				t.Fatalf("%d more writes (a refusal is not retried)", len(puts))
			}
		})
	}
}

func ptr(s string) *string { return &s }

type leafSource struct {
	rpc.Source
	leaf *x509.Certificate
}

func (l leafSource) Leaf() *x509.Certificate { return l.leaf }

func TestSpiffeIDOf(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// A files certificate may name every daemon of the node: the one of
	// the service is taken.
	leaf := &x509.Certificate{URIs: []*url.URL{
		uri("spiffe://td/ns/default/dc/dc1/svc/openssi-dlmd.node1"),
		uri("spiffe://td/ns/default/dc/dc1/svc/openssi-vprocd.node1"),
	}}
	id, err := spiffeIDOf(leafSource{leaf: leaf}, "openssi-vprocd")
	if err != nil || id.Service != "openssi-vprocd.node1" || id.TrustDomain != "td" {
		t.Fatalf("spiffeIDOf = %+v, %v", id, err)
	}
	if _, err := spiffeIDOf(leafSource{leaf: leaf}, "openssi-initfailover"); err == nil {
		t.Error("no identity of the service: no error")
	}
	if _, err := spiffeIDOf(leafSource{}, "openssi-vprocd"); err == nil {
		t.Error("no certificate: no error")
	}
}

// TestListPins: the watch's query lists openssi/rootkeys/, waits on the
// index it is given, and leaves out a value that is not a pin.
func TestListPins(t *testing.T) {
	pin := rootkey.Pin{7}
	var query atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query.Store(r.URL.Path + "?" + r.URL.RawQuery)
		w.Header().Set("X-Consul-Index", "42")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"Key":"openssi/rootkeys/node1/openssi-vprocd","Value":"` + base64.StdEncoding.EncodeToString(rootkey.Encode(pin)) + `"},` +
			`{"Key":"openssi/rootkeys/node2/openssi-vprocd","Value":"` + base64.StdEncoding.EncodeToString([]byte(`{}`)) + `"}]`))
	}))
	defer srv.Close()
	client, err := consul.NewClient(consul.Options{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	pins, index, err := listPins(consul.NewKV(client), log)(context.Background(), 17)
	if err != nil {
		t.Fatal(err)
	}
	if index != 42 || len(pins) != 1 || pins["rootkeys/node1/openssi-vprocd"] != pin {
		t.Fatalf("pins %v index %d", pins, index)
	}
	q, _ := query.Load().(string)
	if !strings.HasPrefix(q, "/v1/kv/openssi/rootkeys/?") || !strings.Contains(q, "recurse") || !strings.Contains(q, "index=17") {
		t.Fatalf("query %s", q)
	}
	if len(hook.AllEntries()) != 1 {
		t.Fatalf("%d log entries, want the bad pin's", len(hook.AllEntries()))
	}
}
