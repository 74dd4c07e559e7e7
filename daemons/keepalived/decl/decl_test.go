package decl

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const path = "/etc/openssi/keepalive.d/web.yaml"

func TestParseFile(t *testing.T) {
	d, err := ParseFile(path, []byte(`# the web app
command: [/usr/bin/python3, -m, http.server, "8080"]
user: www-data
primary: 2
backup: [3, 1]
placement: round_robin
retries: 5
within: 2m
check: http://127.0.0.1:8080/
check_interval: 500ms
`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "web" || strings.Join(d.Command, " ") != "/usr/bin/python3 -m http.server 8080" || d.User != "www-data" ||
		d.Primary != 2 || len(d.Backups) != 2 || d.Backups[0] != 3 || d.Placement != "round_robin" || d.Retries != 5 ||
		d.Within != 2*time.Minute || d.Check != "http://127.0.0.1:8080/" || d.CheckInterval != 500*time.Millisecond || d.Source != path {
		t.Errorf("parsed %+v", d)
	}
	d, err = ParseFile(path, []byte("command: [/bin/true]\nbackup: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.User != "root" || d.Placement != "last_node" || d.Retries != DefaultRetries || d.Within != DefaultWithin ||
		d.CheckInterval != DefaultCheckInterval || len(d.Backups) != 1 || d.Backups[0] != 3 || d.Primary != 0 {
		t.Errorf("defaults: %+v", d)
	}
}

// TestParseErrors: every fault names the path, the line and the field.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		file, want string
	}{
		{"command: [/bin/true]\nretries: x\n", path + ":2: retries: \"x\": want an integer 1..100"},
		{"command: [/bin/true]\nretries: 0\n", path + ":2: retries: \"0\": want an integer 1..100"},
		{"command: [/bin/true]\nretries: 101\n", path + ":2: retries: 101: want 1..100"},
		{"command: /bin/true\n", path + ":1: command: want a list: the program, then its arguments"},
		{"command: []\n", path + ":1: command: want the program and its arguments"},
		{"user: bob\n", path + ":1: command: missing: want the program and its arguments"},
		{"command: [/bin/true]\nprimary: 0\n", path + ":2: primary: \"0\": want a node number 1..511"},
		{"command: [/bin/true]\nprimary: 512\n", path + ":2: primary: \"512\": want a node number 1..511"},
		{"command: [/bin/true]\nbackup:\n  - 2\n  - nine\n", path + ":4: backup: \"nine\": want a node number 1..511"},
		{"command: [/bin/true]\nbackup: {a: 1}\n", path + ":2: backup: want a node number or a list of them"},
		{"command: [/bin/true]\nplacement: primary\n", path + ":2: placement: \"primary\": want last_node or round_robin"},
		{"command: [/bin/true]\nwithin: soon\n", path + ":2: within: \"soon\": want a duration such as 60s"},
		{"command: [/bin/true]\nwithin: 10ms\n", path + ":2: within: 10ms: want 1s..24h"},
		{"command: [/bin/true]\ncheck: tcp:0\n", path + ":2: check: check \"tcp:0\": the port must be 1..65535 (it can never pass)"},
		{"command: [/bin/true]\ncheck: tcp:70000\n", path + ":2: check: check \"tcp:70000\": the port must be 1..65535 (it can never pass)"},
		{"command: [/bin/true]\ncheck: http://\n", path + ":2: check: check \"http://\": not an http(s) URL (it can never pass)"},
		{"command: [/bin/true]\ncheck: ping:host\n", path + ":2: check: check \"ping:host\": unknown kind \"ping\": want exec:CMD, tcp:PORT or http:URL"},
		{"command: [/bin/true]\ncheck: \"exec:\"\n", path + ":2: check: check \"exec:\": want exec:CMD, tcp:PORT or http:URL"},
		{"command: [/bin/true]\ncheck: exec: x\n", path + ":2: not YAML: mapping values are not allowed in this context"},
		{"command: [/bin/true]\nuser: \"bad user\"\n", path + ":2: user: \"bad user\" is not a user name"},
		{"command: [/bin/true]\nuser:\n", path + ":2: user: want a single value"},
		{"command: [/bin/true]\ncolour: red\n", path + ":2: colour: unknown field: want one of command, user, primary, backup, placement, retries, within, check, check_interval"},
		{"command: [/bin/true]\nretries: 2\nretries: 3\n", path + ":3: retries: given twice (first on line 2)"},
		{"- command\n", path + ":1: want a mapping of command, user, primary, backup, placement, retries, within, check, check_interval"},
		{"command: [/bin/true\n", path + ":1: not YAML:"},
		{"", path + ": empty: want a mapping of"},
	} {
		_, err := ParseFile(path, []byte(tc.file))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%q: error %v, want a *FieldError", tc.file, err)
			continue
		}
		if want := "keepalive: " + tc.want; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q:\n got %s\nwant %s", tc.file, err, want)
		}
	}
	if _, err := ParseFile("/etc/openssi/keepalive.d/Web.yaml", []byte("command: [/bin/true]\n")); err == nil || !strings.Contains(err.Error(), "Web.yaml: application name") {
		t.Errorf("a bad name: %v", err)
	}
	if _, err := ParseFile(path, []byte(strings.Repeat("#", MaxFileSize+1))); !errors.Is(err, ErrTooLarge) && (err == nil || !strings.Contains(err.Error(), "64 KiB")) {
		t.Errorf("a large file: %v", err)
	}
}

func TestParseCheck(t *testing.T) {
	for in, want := range map[string]Check{
		"exec:curl -sf localhost":      {Exec, "curl -sf localhost"},
		"tcp:8080":                     {TCP, "127.0.0.1:8080"},
		"tcp:10.0.0.1:22":              {TCP, "10.0.0.1:22"},
		"tcp:[::1]:22":                 {TCP, "[::1]:22"},
		"http://127.0.0.1:8080/health": {HTTP, "http://127.0.0.1:8080/health"},
		"http:http://127.0.0.1:8080/":  {HTTP, "http://127.0.0.1:8080/"},
		"https://example.org/":         {HTTP, "https://example.org/"},
		"http:8080/health":             {HTTP, "http://127.0.0.1:8080/health"},
	} {
		got, err := ParseCheck(in)
		if err != nil || got != want {
			t.Errorf("ParseCheck(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "tcp", "tcp:", "tcp:x", "http:99999/", "ftp:host", "exec: "} {
		if _, err := ParseCheck(in); err == nil {
			t.Errorf("ParseCheck(%q) accepted", in)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"web", "a", "app-1_b", strings.Repeat("a", 48)} {
		if CheckName(ok) != nil {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "-web", "Web", "a/b", "a.b", strings.Repeat("a", 49), "a b"} {
		if CheckName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseFile: any file is parsed or refused with a FieldError naming
// the path, never a panic; what is accepted validates.
func FuzzParseFile(f *testing.F) {
	for _, s := range []string{
		"command: [/bin/true]\n",
		"command: [/usr/bin/python3, -m, http.server, \"8080\"]\nuser: www-data\nprimary: 2\nbackup: [3, 1]\nplacement: round_robin\nretries: 5\nwithin: 2m\ncheck: http:8080/\ncheck_interval: 1s\n",
		"command: [/bin/true]\nbackup: 3\ncheck: tcp:[::1]:22\n",
		"command: [/bin/true]\nretries: 2\nretries: 3\n",
		"command: &a [x]\nuser: *a\n",
		"{command: [a], backup: [1, 2, 3, 4]}",
		"- 1\n",
		"command: [/bin/true\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseFile(path, data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Source != path || !strings.HasPrefix(err.Error(), "keepalive: "+path) {
				t.Fatalf("error %v is not a FieldError of %s", err, path)
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted %+v, which does not validate: %v", d, err)
		}
	})
}
