package daemon

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemons"
)

// TestConsulTokenFromCredential: under systemd the token comes from the
// credential consul.token when it is not empty, over cluster.consul's
// token_file and token; an empty one (the unit's default on a node
// without /etc/openssi/consul.token) leaves the settings in charge. The
// log says where the token came from, never the token.
func TestConsulTokenFromCredential(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Consul-Token")
		_, _ = w.Write([]byte(`"127.0.0.1:8300"`))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, credential, settings string
		noCredentials              bool
		wantToken, wantLog         string
	}{
		{name: "credential wins", credential: "cred-secret\n", settings: "token: conf-secret", wantToken: "cred-secret", wantLog: "from the systemd credential consul.token"},
		{name: "empty credential: the setting", credential: "", settings: "token: conf-secret", wantToken: "conf-secret", wantLog: "from cluster.consul.token (the credential consul.token is empty"},
		{name: "empty credential, no setting", credential: "\n", wantToken: "", wantLog: "no Consul ACL token set"},
		{name: "outside systemd", noCredentials: true, settings: "token: conf-secret", wantToken: "conf-secret", wantLog: "from cluster.consul.token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			creds := ""
			if !tc.noCredentials {
				creds = filepath.Join(dir, "credentials")
				if err := os.Mkdir(creds, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(creds, consul.TokenCredential), []byte(tc.credential), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("CREDENTIALS_DIRECTORY", creds)
			t.Setenv("CONSUL_HTTP_TOKEN", "")
			conf := filepath.Join(dir, "openssi.yaml")
			yaml := "cluster:\n  run_dir: " + dir + "\n  socket_group: \"\"\n  consul:\n    address: " + strings.TrimPrefix(srv.URL, "http://") + "\n    " + tc.settings + "\n"
			if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := main(daemons.All[0], daemons.Sections(), []string{"--config", conf}, &stdout, &stderr, func(ctx context.Context, env *Env) error {
				c, err := env.Consul()
				if err != nil {
					return err
				}
				_, err = c.Status().Leader()
				return err
			})
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if tok := <-got; tok != tc.wantToken {
				t.Errorf("token sent %q, want %q", tok, tc.wantToken)
			}
			log := stderr.String()
			if !strings.Contains(log, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, log)
			}
			if strings.Contains(log, "secret") {
				t.Errorf("log shows the token:\n%s", log)
			}
		})
	}
}
