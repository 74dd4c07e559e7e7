package config_test

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	. "github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/daemons"
)

// whole is a loaded configuration of the registered daemons, comparable.
type whole struct {
	Cluster Cluster
	Clmsd   clmsdspec.Config
	Dlmd    dlmdspec.Config
}

func flatten(c *Config) whole {
	return whole{Cluster: c.Cluster, Clmsd: clmsdspec.From(c), Dlmd: dlmdspec.From(c)}
}

// Default is the whole default configuration.
func Default() whole { return flatten(Defaults(daemons.Sections())) }

// load is Load of a file of the registered daemons.
func load(o LoadOptions) (*Config, error) {
	o.Sections = daemons.Sections()
	return Load(o)
}

// addFlags is AddFlags for a registered daemon (or only the shared flags).
func addFlags(fs *pflag.FlagSet, daemon string) map[string]string {
	if d, ok := daemons.Find(daemon); ok {
		return AddFlags(fs, &d.Config)
	}
	return AddFlags(fs, nil)
}

// clearEnv hides any OPENSSI_* variable of the environment running the
// tests (an empty variable counts as unset).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, EnvPrefix+"_") {
			t.Setenv(k, "")
		}
	}
}

// writeFile writes content to a fresh file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "openssi.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func keys(t *testing.T) (leaves, all []string, allowed map[string]string) {
	t.Helper()
	return Keys(daemons.Sections())
}

func TestDefaultIsValid(t *testing.T) {
	c := Defaults(daemons.Sections())
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestAllowedCoversEveryKey(t *testing.T) {
	_, all, allowed := keys(t)
	seen := map[string]bool{}
	for _, k := range all {
		seen[k] = true
		if a := allowed[k]; !strings.HasPrefix(a, "want ") {
			t.Errorf("allowed[%q] = %q, want a text starting with \"want \"", k, a)
		}
	}
	for k := range allowed {
		if !seen[k] {
			t.Errorf("allowed has %q, which is not a field of Config", k)
		}
	}
}

// TestExampleFile checks the shipped example: it loads, it equals the
// defaults (it documents them) and it mentions every setting.
func TestExampleFile(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, string(Example(daemons.Sections())))
	c, err := load(LoadOptions{Path: path})
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	if want := Default(); flatten(c) != want {
		t.Errorf("example file differs from Default():\n got %+v\nwant %+v", flatten(c), want)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	leaves, _, _ := keys(t)
	for _, k := range leaves {
		if LineOf(doc.Content[0], k) == math.MaxInt32 {
			t.Errorf("example file does not show %s", k)
		}
	}
}

func TestLoad(t *testing.T) {
	def := Default()
	tests := []struct {
		name string
		file string // "" = no file (Path pointing at the default, absent)
		env  map[string]string
		args []string
		want func(c *whole) // edits Default() into the expected config
		err  string         // exact error; $FILE stands for the file path
	}{
		{name: "no file", want: func(*whole) {}},
		{name: "empty file", file: "\n", want: func(*whole) {}},
		{name: "comment only", file: "# nothing\n", want: func(*whole) {}},
		{name: "null document", file: "~\n", want: func(*whole) {}},
		{
			name: "every kind of field",
			file: `
cluster:
  name: lab-1
  log_level: debug
  run_dir: /tmp/run
  state_dir: /tmp/state
  socket_group: ""
  advertise_address: 10.1.2.3
  consul:
    address: "[::1]:8501"
    scheme: https
    token: secret
    token_file: /etc/openssi/token
    root_token_file: /etc/openssi/root
    ca_file: /etc/ca.pem
    cert_file: /etc/c.pem
    key_file: /etc/k.pem
    tls_server_name: consul.example
  tls:
    source: files
    cert_file: /etc/openssi/node.pem
    key_file: /etc/openssi/node.key
    ca_file: /etc/openssi/ca.pem
clmsd:
  node_number: 511
  rpc_port: 65535
  skew_threshold: 1ms
  skew_interval: 100ms
`,
			want: func(c *whole) {
				c.Cluster = Cluster{
					Name: "lab-1", LogLevel: "debug", RunDir: "/tmp/run", StateDir: "/tmp/state",
					AdvertiseAddress: "10.1.2.3",
					Consul: Consul{
						Address: "[::1]:8501", Scheme: "https", Token: "secret",
						TokenFile: "/etc/openssi/token", RootTokenFile: "/etc/openssi/root", CAFile: "/etc/ca.pem", CertFile: "/etc/c.pem",
						KeyFile: "/etc/k.pem", TLSServerName: "consul.example",
					},
					TLS: TLS{Source: "files", CertFile: "/etc/openssi/node.pem",
						KeyFile: "/etc/openssi/node.key", CAFile: "/etc/openssi/ca.pem"},
				}
				c.Clmsd = clmsdspec.Config{NodeNumber: 511, RPCPort: 65535, SkewThreshold: time.Millisecond,
					SkewInterval: 100 * time.Millisecond}
			},
		},
		{name: "keys are case-insensitive", file: "Clmsd:\n  Node_Number: 7\n", want: func(c *whole) { c.Clmsd.NodeNumber = 7 }},
		{name: "integer as string", file: "clmsd:\n  node_number: \"12\"\n", want: func(c *whole) { c.Clmsd.NodeNumber = 12 }},
		{name: "integer as whole float", file: "clmsd:\n  rpc_port: 8e3\n", want: func(c *whole) { c.Clmsd.RPCPort = 8000 }},
		{name: "number as name", file: "cluster:\n  name: 42\n", want: func(c *whole) { c.Cluster.Name = "42" }},
		{name: "empty value keeps default", file: "cluster:\n  name:\n", want: func(*whole) {}},

		// Environment and flags.
		{name: "env for a default-only key", env: map[string]string{"OPENSSI_CLMSD_NODE_NUMBER": "5"},
			want: func(c *whole) { c.Clmsd.NodeNumber = 5 }},
		{name: "env nested key", env: map[string]string{"OPENSSI_CLUSTER_CONSUL_ADDRESS": "10.0.0.1:8500"},
			want: func(c *whole) { c.Cluster.Consul.Address = "10.0.0.1:8500" }},
		{name: "env duration", env: map[string]string{"OPENSSI_CLMSD_SKEW_INTERVAL": "1m"},
			want: func(c *whole) { c.Clmsd.SkewInterval = time.Minute }},
		{name: "empty env is unset", file: "clmsd:\n  rpc_port: 9000\n", env: map[string]string{"OPENSSI_CLMSD_RPC_PORT": ""},
			want: func(c *whole) { c.Clmsd.RPCPort = 9000 }},
		{name: "file < env", file: "cluster:\n  log_level: debug\n", env: map[string]string{"OPENSSI_CLUSTER_LOG_LEVEL": "warn"},
			want: func(c *whole) { c.Cluster.LogLevel = "warn" }},
		{name: "env < flags", file: "cluster:\n  log_level: debug\n", env: map[string]string{"OPENSSI_CLUSTER_LOG_LEVEL": "warn"},
			args: []string{"--log-level=error"}, want: func(c *whole) { c.Cluster.LogLevel = "error" }},
		{name: "file < flags", file: "clmsd:\n  node_number: 3\n  rpc_port: 9000\n", args: []string{"--node-number", "4"},
			want: func(c *whole) { c.Clmsd.NodeNumber = 4; c.Clmsd.RPCPort = 9000 }},
		{name: "unset flags do not override", file: "cluster:\n  consul:\n    address: a:1\n", env: map[string]string{"OPENSSI_CLMSD_RPC_PORT": "9001"},
			args: []string{"--log-level", "trace"},
			want: func(c *whole) {
				c.Cluster.Consul.Address = "a:1"
				c.Clmsd.RPCPort = 9001
				c.Cluster.LogLevel = "trace"
			}},
		{name: "consul on a unix socket", file: "cluster:\n  consul:\n    address: unix:///run/consul/http.sock\n",
			want: func(c *whole) { c.Cluster.Consul.Address = "unix:///run/consul/http.sock" }},
		{name: "flags over everything", args: []string{"--consul-address=h:2", "--rpc-port=1"},
			want: func(c *whole) { c.Cluster.Consul.Address = "h:2"; c.Clmsd.RPCPort = 1 }},

		// Bad values, wherever they come from.
		{name: "int not a number", file: "clmsd:\n  node_number: abc\n",
			err: `config: clmsd.node_number: "abc" is not valid: want an integer 0..511 (0 = claim automatically)`},
		{name: "int from env not a number", env: map[string]string{"OPENSSI_CLMSD_NODE_NUMBER": "abc"},
			err: `config: clmsd.node_number: "abc" is not valid: want an integer 0..511 (0 = claim automatically)`},
		{name: "int out of range", file: "clmsd:\n  node_number: 512\n",
			err: `config: clmsd.node_number: "512" is not valid: want an integer 0..511 (0 = claim automatically)`},
		{name: "negative node", env: map[string]string{"OPENSSI_CLMSD_NODE_NUMBER": "-1"},
			err: `config: clmsd.node_number: "-1" is not valid: want an integer 0..511 (0 = claim automatically)`},
		{name: "int fraction", file: "clmsd:\n  rpc_port: 80.5\n",
			err: `config: clmsd.rpc_port: "80.5" is not valid: want an integer 1..65535`},
		{name: "int bool", file: "clmsd:\n  rpc_port: true\n",
			err: `config: clmsd.rpc_port: "true" is not valid: want an integer 1..65535`},
		{name: "port zero", file: "clmsd:\n  rpc_port: 0\n",
			err: `config: clmsd.rpc_port: "0" is not valid: want an integer 1..65535`},
		{name: "port from flag", args: []string{"--rpc-port=70000"},
			err: `config: clmsd.rpc_port: "70000" is not valid: want an integer 1..65535`},
		{name: "int is a mapping", file: "clmsd:\n  node_number:\n    a: 1\n",
			err: `config: clmsd.node_number: "map[a:1]" is not valid: want an integer 0..511 (0 = claim automatically)`},
		{name: "duration word", file: "clmsd:\n  skew_interval: fast\n",
			err: `config: clmsd.skew_interval: "fast" is not valid: want a duration of at least 100ms such as 5s`},
		{name: "duration without unit", file: "clmsd:\n  skew_threshold: 100\n",
			err: `config: clmsd.skew_threshold: "100" is not valid: want a duration > 0 such as 100ms`},
		{name: "duration zero", file: "clmsd:\n  skew_threshold: 0s\n",
			err: `config: clmsd.skew_threshold: "0s" is not valid: want a duration > 0 such as 100ms`},
		{name: "interval too short", env: map[string]string{"OPENSSI_CLMSD_SKEW_INTERVAL": "99ms"},
			err: `config: clmsd.skew_interval: "99ms" is not valid: want a duration of at least 100ms such as 5s`},
		{name: "string is a list", file: "cluster:\n  name: [a, b]\n",
			err: `config: cluster.name: "[a b]" is not valid: want 1 to 63 characters from a-z, 0-9 and '-'`},
		{name: "string is a bool", file: "cluster:\n  scheme: true\n",
			err: `config: /$FILE:2: unknown key "cluster.scheme"`},
		{name: "consul scheme bool", file: "cluster:\n  consul:\n    scheme: true\n",
			err: `config: cluster.consul.scheme: "true" is not valid: want http or https`},
		{name: "name upper case", file: "cluster:\n  name: Lab\n",
			err: `config: cluster.name: "Lab" is not valid: want 1 to 63 characters from a-z, 0-9 and '-'`},
		{name: "name too long", file: "cluster:\n  name: " + strings.Repeat("a", 64) + "\n",
			err: `config: cluster.name: "` + strings.Repeat("a", 64) + `" is not valid: want 1 to 63 characters from a-z, 0-9 and '-'`},
		{name: "name empty", file: "cluster:\n  name: \"\"\n",
			err: `config: cluster.name: "" is not valid: want 1 to 63 characters from a-z, 0-9 and '-'`},
		{name: "log level", file: "cluster:\n  log_level: verbose\n",
			err: `config: cluster.log_level: "verbose" is not valid: want one of trace, debug, info, warn, error`},
		{name: "log level flag", args: []string{"--log-level", "warning"},
			err: `config: cluster.log_level: "warning" is not valid: want one of trace, debug, info, warn, error`},
		{name: "relative run dir", file: "cluster:\n  run_dir: run/openssi\n",
			err: `config: cluster.run_dir: "run/openssi" is not valid: want an absolute path`},
		{name: "relative state dir", env: map[string]string{"OPENSSI_CLUSTER_STATE_DIR": "state"},
			err: `config: cluster.state_dir: "state" is not valid: want an absolute path`},
		{name: "socket group", file: "cluster:\n  socket_group: \"a b\"\n",
			err: `config: cluster.socket_group: "a b" is not valid: want a group name or number, or empty`},
		{name: "advertise address", file: "cluster:\n  advertise_address: node1\n",
			err: `config: cluster.advertise_address: "node1" is not valid: want an IP address, or empty for the Consul agent's address`},
		{name: "consul address without port", args: []string{"--consul-address", "localhost"},
			err: `config: cluster.consul.address: "localhost" is not valid: want host:port with a port 1..65535, or unix:///absolute/path`},
		{name: "consul address without host", file: "cluster:\n  consul:\n    address: \":8500\"\n",
			err: `config: cluster.consul.address: ":8500" is not valid: want host:port with a port 1..65535, or unix:///absolute/path`},
		{name: "consul address relative socket", file: "cluster:\n  consul:\n    address: unix://run/consul.sock\n",
			err: `config: cluster.consul.address: "unix://run/consul.sock" is not valid: want host:port with a port 1..65535, or unix:///absolute/path`},
		{name: "consul address unclean socket", file: "cluster:\n  consul:\n    address: unix:///run/../consul.sock\n",
			err: `config: cluster.consul.address: "unix:///run/../consul.sock" is not valid: want host:port with a port 1..65535, or unix:///absolute/path`},
		{name: "consul address bad port", file: "cluster:\n  consul:\n    address: h:99999\n",
			err: `config: cluster.consul.address: "h:99999" is not valid: want host:port with a port 1..65535, or unix:///absolute/path`},
		{name: "scheme", file: "cluster:\n  consul:\n    scheme: ftp\n",
			err: `config: cluster.consul.scheme: "ftp" is not valid: want http or https`},
		{name: "consul cert without key", file: "cluster:\n  consul:\n    cert_file: /c.pem\n",
			err: `config: cluster.consul.key_file: "" is not valid: want a file path (set together with cluster.consul.cert_file)`},
		{name: "consul key without cert", file: "cluster:\n  consul:\n    key_file: /k.pem\n",
			err: `config: cluster.consul.cert_file: "" is not valid: want a file path (set together with cluster.consul.key_file)`},
		{name: "tls server name", file: "cluster:\n  consul:\n    tls_server_name: \"a b\"\n",
			err: `config: cluster.consul.tls_server_name: "a b" is not valid: want a host name`},
		{name: "tls source", file: "cluster:\n  tls:\n    source: vault\n",
			err: `config: cluster.tls.source: "vault" is not valid: want connect or files`},
		{name: "tls files need cert", file: "cluster:\n  tls:\n    source: files\n",
			err: `config: cluster.tls.cert_file: "" is not valid: want a file path (required when cluster.tls.source is files)`},
		{name: "tls files need key", file: "cluster:\n  tls:\n    source: files\n    cert_file: /c\n",
			err: `config: cluster.tls.key_file: "" is not valid: want a file path (required when cluster.tls.source is files)`},
		{name: "tls files need ca", file: "cluster:\n  tls:\n    source: files\n    cert_file: /c\n    key_file: /k\n",
			err: `config: cluster.tls.ca_file: "" is not valid: want a file path (required when cluster.tls.source is files)`},
		{name: "first bad value in file order", file: "clmsd:\n  rpc_port: x\n  node_number: y\n",
			err: `config: clmsd.node_number: "y" is not valid: want an integer 0..511 (0 = claim automatically)`},
		{name: "long value is shortened", env: map[string]string{"OPENSSI_CLUSTER_RUN_DIR": strings.Repeat("r", 100)},
			err: `config: cluster.run_dir: "` + strings.Repeat("r", 80) + `..." is not valid: want an absolute path`},

		// Structure.
		{name: "section is a scalar", file: "cluster: 5\n",
			err: `config: cluster: "5" is not valid: want a mapping of cluster settings`},
		{name: "section is a list", file: "cluster:\n  tls: [1, 2]\n",
			err: `config: cluster.tls: "[1 2]" is not valid: want a mapping of TLS settings`},
		{name: "unknown key", file: "cluster:\n  name: a\nclmsd:\n  nod_number: 3\n",
			err: `config: /$FILE:4: unknown key "clmsd.nod_number"`},
		{name: "unknown keys", file: "zzz: 1\nclmsd:\n  foo: 1\n  bar: 2\n",
			err: `config: /$FILE:1: unknown key "zzz" (and 2 more)`},
		{name: "unknown nested key", file: "cluster:\n  consul:\n    adress: x:1\n",
			err: `config: /$FILE:3: unknown key "cluster.consul.adress"`},
		{name: "top level not a mapping", file: "# c\nhello\n",
			err: `config: /$FILE:2: want a mapping with cluster: and daemon sections at the top level`},
		{name: "syntax error", file: "cluster:\n  name: a\n    log_level: b\n",
			err: `config: /$FILE:3: mapping values are not allowed in this context`},
		{name: "syntax error on line 1", file: "a: b: c\n",
			err: `config: /$FILE:1: mapping values are not allowed in this context`},
		{name: "tab", file: "cluster:\n\tname: a\n",
			err: `config: /$FILE:2: found character that cannot start any token`},
		{name: "unclosed flow", file: "cluster: {name: a\n",
			err: `config: /$FILE:1: did not find expected ',' or '}'`},
		{name: "duplicate key", file: "clmsd:\n  rpc_port: 1\n  rpc_port: 2\n",
			err: `config: /$FILE:3: mapping key "rpc_port" already defined at line 2`},
		{name: "recursive alias", file: "x: &a [*a]\n",
			err: `config: /$FILE:1: anchor 'a' value contains itself`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "openssi.yaml")
			t.Cleanup(SetDefaultPath(path))
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			fs := pflag.NewFlagSet("clmsd", pflag.ContinueOnError)
			bind := addFlags(fs, "clmsd")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := load(LoadOptions{Flags: fs, Bindings: bind})
			if tt.err != "" {
				want := strings.ReplaceAll(tt.err, "/$FILE", path)
				if err == nil {
					t.Fatalf("Load() = %+v, want error %s", flatten(got), want)
				}
				if err.Error() != want {
					t.Fatalf("Load() error\n got %s\nwant %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			want := def
			tt.want(&want)
			if flatten(got) != want {
				t.Fatalf("Load():\n got %+v\nwant %+v", flatten(got), want)
			}
		})
	}
}

func TestErrorKinds(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		file string
		is   error
	}{
		{"clmsd:\n  node_number: x\n", ErrInvalid},
		{"clmsd:\n  node_numbr: 1\n", ErrUnknownKey},
		{"a: b: c\n", ErrSyntax},
		{"[1]\n", ErrSyntax},
	}
	for _, tt := range tests {
		_, err := load(LoadOptions{Path: writeFile(t, tt.file)})
		if !errors.Is(err, tt.is) {
			t.Errorf("Load(%q) = %v, want errors.Is %v", tt.file, err, tt.is)
		}
	}
	_, err := load(LoadOptions{Path: writeFile(t, "clmsd:\n  node_number: x\n")})
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "clmsd.node_number" || ce.Value != "x" {
		t.Errorf("errors.As(*Error) on %v: %+v", err, ce)
	}
}

func TestPathRules(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")

	// The default path may be absent.
	t.Cleanup(SetDefaultPath(missing))
	if _, err := load(LoadOptions{}); err != nil {
		t.Errorf("absent default file: %v", err)
	}
	if _, err := load(LoadOptions{Path: missing}); err != nil {
		t.Errorf("absent default file given as Path: %v", err)
	}

	// Any other path must exist.
	other := filepath.Join(dir, "other.yaml")
	_, err := load(LoadOptions{Path: other})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent explicit file: %v, want fs.ErrNotExist", err)
	}
	if want := "config: open " + other + ": no such file or directory"; err.Error() != want {
		t.Errorf("absent explicit file:\n got %s\nwant %s", err, want)
	}

	// --config names the file; an explicit Path wins over it.
	good := writeFile(t, "clmsd:\n  node_number: 9\n")
	flags := pflag.NewFlagSet("x", pflag.ContinueOnError)
	bind := addFlags(flags, "dlmd")
	if err := flags.Parse([]string{"--config", good}); err != nil {
		t.Fatal(err)
	}
	c, err := load(LoadOptions{Flags: flags, Bindings: bind})
	if err != nil || clmsdspec.From(c).NodeNumber != 9 {
		t.Errorf("--config: %+v, %v", c, err)
	}
	if _, err := load(LoadOptions{Path: other, Flags: flags, Bindings: bind}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Path over --config: %v", err)
	}
	flags = pflag.NewFlagSet("x", pflag.ContinueOnError)
	addFlags(flags, "dlmd")
	if err := flags.Parse([]string{"--config", other}); err != nil {
		t.Fatal(err)
	}
	if _, err := load(LoadOptions{Flags: flags}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("--config absent file: %v", err)
	}

	// A huge file is refused.
	huge := writeFile(t, "# "+strings.Repeat("x", MaxFileSize)+"\n")
	if _, err := load(LoadOptions{Path: huge}); !errors.Is(err, ErrSyntax) {
		t.Errorf("huge file: %v", err)
	}

	// A directory is not a file.
	if _, err := load(LoadOptions{Path: dir}); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("directory as file: %v", err)
	}
}

func TestAddFlags(t *testing.T) {
	// ipcd: a daemon not registered yet, so only the shared flags.
	fs := pflag.NewFlagSet("ipcd", pflag.ContinueOnError)
	bind := addFlags(fs, "ipcd")
	want := map[string]string{"log-level": "cluster.log_level", "consul-address": "cluster.consul.address"}
	if !reflect.DeepEqual(bind, want) {
		t.Errorf("addFlags(ipcd) = %v, want %v", bind, want)
	}
	if fs.Lookup("node-number") != nil || fs.Lookup("config") == nil {
		t.Errorf("ipcd flags wrong")
	}
	fs = pflag.NewFlagSet("dlmd", pflag.ContinueOnError)
	bind = addFlags(fs, "dlmd")
	if bind["rpc-port"] != "dlmd.rpc_port" || fs.Lookup("node-number") != nil {
		t.Errorf("addFlags(dlmd) = %v", bind)
	}
	fs = pflag.NewFlagSet("clmsd", pflag.ContinueOnError)
	bind = addFlags(fs, "clmsd")
	if bind["node-number"] != "clmsd.node_number" || bind["rpc-port"] != "clmsd.rpc_port" {
		t.Errorf("addFlags(clmsd) = %v", bind)
	}
	_, _, allowed := keys(t)
	for _, key := range bind {
		if _, ok := allowed[key]; !ok {
			t.Errorf("binding to unknown key %q", key)
		}
	}
}

func TestBadBinding(t *testing.T) {
	clearEnv(t)
	t.Cleanup(SetDefaultPath(filepath.Join(t.TempDir(), "none.yaml")))
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("level", "", "")
	_, err := load(LoadOptions{Flags: fs, Bindings: map[string]string{"level": "cluster.loglevel"}})
	want := `config: flag --level is bound to "cluster.loglevel", which is not a setting`
	if err == nil || err.Error() != want {
		t.Errorf("Load() = %v, want %s", err, want)
	}
	// A binding to a flag that is not defined is ignored.
	if _, err := load(LoadOptions{Flags: fs, Bindings: map[string]string{"nope": "cluster.name"}}); err != nil {
		t.Errorf("Load() = %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		edit func(c *Config)
		err  string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Cluster.AdvertiseAddress = "fe80::1" }, ""},
		{func(c *Config) { c.Cluster.SocketGroup = "1000" }, ""},
		{func(c *Config) { c.Cluster.SocketGroup = "" }, ""},
		{func(c *Config) { c.Cluster.Consul.Address = "consul.service:8500" }, ""},
		{func(c *Config) { c.Cluster.Consul.Address = "a b:1" }, `config: cluster.consul.address: "a b:1" is not valid: want host:port with a port 1..65535, or unix:///absolute/path`},
		{func(c *Config) { c.Section("clmsd").(*clmsdspec.Config).SkewInterval = -time.Second }, `config: clmsd.skew_interval: "-1s" is not valid: want a duration of at least 100ms such as 5s`},
		{func(c *Config) { c.Cluster.LogLevel = "INFO" }, `config: cluster.log_level: "INFO" is not valid: want one of trace, debug, info, warn, error`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).Lease = 200 * time.Millisecond }, ""},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).Lease = time.Minute }, ""},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).Lease = 199 * time.Millisecond }, `config: dlmd.lease: "199ms" is not valid: want a duration 200ms..60s such as 1s`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).Lease = 1000000 * time.Hour }, `config: dlmd.lease: "1000000h0m0s" is not valid: want a duration 200ms..60s such as 1s`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxLocksPerSession = 0 }, `config: dlmd.max_locks_per_session: "0" is not valid: want an integer 1..10000000`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxLocksPerUID = 10000001 }, `config: dlmd.max_locks_per_uid: "10000001" is not valid: want an integer 1..10000000`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxPendingPerSession = -1 }, `config: dlmd.max_pending_per_session: "-1" is not valid: want an integer 1..10000000`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxPendingPerUID = 0 }, `config: dlmd.max_pending_per_uid: "0" is not valid: want an integer 1..10000000`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxSessionsPerUID = 0 }, `config: dlmd.max_sessions_per_uid: "0" is not valid: want an integer 1..100000`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxSessionsPerUID = 100001 }, `config: dlmd.max_sessions_per_uid: "100001" is not valid: want an integer 1..100000`},
		{func(c *Config) { c.Section("dlmd").(*dlmdspec.Config).MaxSessionsPerUID = 100000 }, ""},
	}
	for _, tt := range tests {
		c := Defaults(daemons.Sections())
		tt.edit(c)
		err := c.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != tt.err {
				t.Errorf("Validate() = %s, want %s", got, tt.err)
			}
		} else if tt.err != "" {
			t.Errorf("Validate() = nil, want %s", tt.err)
		}
	}
}

// FuzzLoad feeds arbitrary bytes as the configuration file: Load must not
// panic, and any error must be one line starting with "config: ".
func FuzzLoad(f *testing.F) {
	seed := Example(daemons.Sections())
	for _, s := range []string{
		string(seed), "", "~", "cluster: 5", "clmsd:\n  node_number: abc\n", "a: b: c",
		"x: &a [*a]", "cluster:\n  1: 2", "{cluster: {consul: {address: \"\n\"}}}",
		"clmsd:\n  skew_interval: \"5\\ns\"\n", "? [a]\n: b\n", "cluster: !!binary aGk=\n",
		"--- \n---\n", "\xff\xfe", "cluster:\n  name: \"a\\nb\"\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := os.CreateTemp(dir, "fuzz-*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file.Name())
		if _, err := file.Write(data); err != nil {
			t.Fatal(err)
		}
		file.Close()
		c, err := load(LoadOptions{Path: file.Name()})
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "config: ") {
				t.Fatalf("error is not one config: line: %q", msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned an invalid config: %v", err)
		}
	})
}
