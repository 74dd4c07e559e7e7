// Package decl is what a monitored application of openssi-keepalived is:
// its declaration (command, user, nodes, placement, retries, check), read
// from /etc/openssi/keepalive.d/NAME.yaml or from its registration in
// Consul KV, and checked. A malformed file is reported with its path, its
// line and the field at fault; nothing here runs or opens anything.
package decl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/daemons/keepalived/placement"
)

// Decl declares one monitored application.
type Decl struct {
	// Name names it: the file's name without .yaml, the KV key.
	Name string `json:"name"`
	// Command is the program and its arguments (no shell).
	Command []string `json:"command"`
	// User runs it (default root).
	User string `json:"user,omitempty"`
	// Primary is the node it prefers (0: none); Backups the others it may
	// run on, in order (none: any UP node).
	Primary uint32   `json:"primary,omitempty"`
	Backups []uint32 `json:"backups,omitempty"`
	// Placement is the rule for a new node: last_node or round_robin.
	Placement string `json:"placement,omitempty"`
	// Retries failures Within the same node give it up there.
	Retries int           `json:"retries"`
	Within  time.Duration `json:"within"`
	// Check is exec:CMD, tcp:[HOST:]PORT or http:URL ("" none: only the
	// process's exit counts), run every CheckInterval.
	Check         string        `json:"check,omitempty"`
	CheckInterval time.Duration `json:"check_interval,omitempty"`
	// Source says where it was declared: a file's path, or "" for a
	// registration in Consul KV (ssi keepalive add).
	Source string `json:"-"`
}

// Defaults of a declaration.
const (
	DefaultRetries       = 3
	DefaultWithin        = time.Minute
	DefaultCheckInterval = 2 * time.Second
	DefaultUser          = "root"
	MaxRetries           = 100
	MaxBackups           = 64
	MaxArgs              = 256
	MaxArgLen            = 4096
	// MaxFileSize bounds a declaration file.
	MaxFileSize = 64 << 10
)

// Defaults fills the fields left empty.
func (d *Decl) Defaults() {
	if d.User == "" {
		d.User = DefaultUser
	}
	if d.Placement == "" {
		d.Placement = placement.LastNode.String()
	}
	if d.Retries == 0 {
		d.Retries = DefaultRetries
	}
	if d.Within == 0 {
		d.Within = DefaultWithin
	}
	if d.CheckInterval == 0 {
		d.CheckInterval = DefaultCheckInterval
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)
var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}\$?$|^[0-9]{1,10}$`)

// CheckName accepts an application name: 1-48 of a-z, 0-9, '_' and '-',
// starting with a letter or digit (it names a file, a KV key, a dlmd
// resource and a systemd unit).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("keepalive: application name %.60q: want 1-48 of a-z, 0-9, '_', '-', starting with a letter or digit", name)
	}
	return nil
}

// Unit is the transient systemd unit an application runs in.
func Unit(name string) string { return "openssi-keepalive-" + name + ".service" }

// FieldError is a declaration's fault: where, which field, what is wrong.
type FieldError struct {
	// Source is the file's path or the KV key.
	Source string
	// Line is the line in the file (0: unknown).
	Line  int
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	where := e.Source
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("keepalive: %s: %s", where, e.Msg)
	}
	return fmt.Sprintf("keepalive: %s: %s: %s", where, e.Field, e.Msg)
}

// Validate checks a declaration with its defaults filled, returning a
// *FieldError naming the first field at fault (line 0).
func (d *Decl) Validate() error {
	return d.validate(func(string) int { return 0 })
}

func (d *Decl) validate(line func(field string) int) error {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Source: d.Source, Line: line(field), Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if err := CheckName(d.Name); err != nil {
		return &FieldError{Source: d.Source, Msg: strings.TrimPrefix(err.Error(), "keepalive: ")}
	}
	switch {
	case len(d.Command) == 0 || d.Command[0] == "":
		return bad("command", "want the program and its arguments, e.g. [/usr/bin/python3, -m, http.server, \"8080\"]")
	case len(d.Command) > MaxArgs:
		return bad("command", "%d arguments: at most %d", len(d.Command), MaxArgs)
	}
	for _, a := range d.Command {
		if len(a) > MaxArgLen || strings.ContainsRune(a, 0) {
			return bad("command", "an argument longer than %d bytes or with a NUL byte", MaxArgLen)
		}
	}
	if !userRE.MatchString(d.User) {
		return bad("user", "%.40q is not a user name", d.User)
	}
	if d.Primary > MaxNode {
		return bad("primary", "node %d: want 1..%d", d.Primary, MaxNode)
	}
	if len(d.Backups) > MaxBackups {
		return bad("backup", "%d nodes: at most %d", len(d.Backups), MaxBackups)
	}
	for _, b := range d.Backups {
		if b == 0 || b > MaxNode {
			return bad("backup", "node %d: want 1..%d", b, MaxNode)
		}
	}
	if _, err := placement.ParseRule(d.Placement); err != nil {
		return bad("placement", "%q: want last_node or round_robin", d.Placement)
	}
	if d.Retries < 1 || d.Retries > MaxRetries {
		return bad("retries", "%d: want 1..%d", d.Retries, MaxRetries)
	}
	if d.Within < time.Second || d.Within > 24*time.Hour {
		return bad("within", "%v: want 1s..24h", d.Within)
	}
	if d.CheckInterval < 100*time.Millisecond || d.CheckInterval > time.Hour {
		return bad("check_interval", "%v: want 100ms..1h", d.CheckInterval)
	}
	if d.Check != "" {
		if _, err := ParseCheck(d.Check); err != nil {
			return bad("check", "%v", strings.TrimPrefix(err.Error(), "keepalive: "))
		}
	}
	return nil
}

// MaxNode is the largest node number (clmsd's).
const MaxNode = 511

// Rule returns the declaration's placement rule.
func (d *Decl) Rule() placement.Rule {
	r, err := placement.ParseRule(d.Placement)
	if err != nil {
		return placement.LastNode
	}
	return r
}

// CheckKind is what a check does.
type CheckKind int

// The kinds of check.
const (
	// Exec runs a command with /bin/sh -c as the application's user:
	// exit 0 passes.
	Exec CheckKind = iota + 1
	// TCP connects to a port: a connection passes.
	TCP
	// HTTP gets a URL: a 2xx or 3xx passes.
	HTTP
)

// Check is a parsed check.
type Check struct {
	Kind CheckKind
	// Command (Exec), Address host:port (TCP) or URL (HTTP).
	Target string
}

// ParseCheck reads exec:CMD, tcp:PORT, tcp:HOST:PORT or http:URL (a URL
// http://... or https://..., or PORT/PATH on 127.0.0.1).
func ParseCheck(s string) (Check, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return Check{}, fmt.Errorf("keepalive: check %.60q: want exec:CMD, tcp:PORT or http:URL", s)
	}
	switch kind {
	case "exec":
		if strings.TrimSpace(arg) == "" || strings.ContainsRune(arg, 0) || len(arg) > MaxArgLen {
			return Check{}, fmt.Errorf("keepalive: check %.60q: want a command, as in exec:CMD", s)
		}
		return Check{Kind: Exec, Target: arg}, nil
	case "tcp":
		host, port := "127.0.0.1", arg
		if h, p, err := net.SplitHostPort(arg); err == nil {
			host, port = h, p
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return Check{}, fmt.Errorf("keepalive: check %.60q: the port must be 1..65535 (it can never pass)", s)
		}
		return Check{Kind: TCP, Target: net.JoinHostPort(host, port)}, nil
	case "http", "https":
		raw := arg
		switch {
		case kind == "https" || strings.HasPrefix(arg, "//"):
			raw = kind + ":" + arg
		case !strings.HasPrefix(arg, "http://") && !strings.HasPrefix(arg, "https://"):
			raw = "http://127.0.0.1:" + arg
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return Check{}, fmt.Errorf("keepalive: check %.60q: not an http(s) URL (it can never pass)", s)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return Check{}, fmt.Errorf("keepalive: check %.60q: the port must be 1..65535 (it can never pass)", s)
			}
		}
		return Check{Kind: HTTP, Target: u.String()}, nil
	}
	return Check{}, fmt.Errorf("keepalive: check %.60q: unknown kind %q: want exec:CMD, tcp:PORT or http:URL", s, kind)
}

// fields are the keys of a declaration file, in the order they are
// documented.
var fields = []string{"command", "user", "primary", "backup", "placement", "retries", "within", "check", "check_interval"}

// NameOf returns the application name of a declaration file's path
// (web.yaml -> web) and whether the file is one (ends in .yaml).
func NameOf(path string) (string, bool) {
	return strings.CutSuffix(filepath.Base(path), ".yaml")
}

// ErrTooLarge is wrapped when a file is larger than MaxFileSize.
var ErrTooLarge = errors.New("larger than 64 KiB")

// ParseFile reads the declaration file at path (its content data): a
// YAML mapping of the fields above. The application is named after the
// file. Defaults are filled; an error is a *FieldError with the line.
func ParseFile(path string, data []byte) (Decl, error) {
	name, _ := NameOf(path)
	d := Decl{Name: name, Source: path}
	fail := func(line int, field, format string, a ...any) (Decl, error) {
		return Decl{}, &FieldError{Source: path, Line: line, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if len(data) > MaxFileSize {
		return fail(0, "", "%v", ErrTooLarge)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return fail(0, "", "empty: want a mapping of %s", strings.Join(fields, ", "))
	} else if err != nil {
		return fail(yamlLine(err), "", "not YAML: %s", yamlMsg(err))
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		line := doc.Line
		if len(doc.Content) > 0 {
			line = doc.Content[0].Line
		}
		return fail(line, "", "want a mapping of %s", strings.Join(fields, ", "))
	}
	m := doc.Content[0]
	lines := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fail(k.Line, "", "a key that is not a name")
		}
		f := k.Value
		if !slices.Contains(fields, f) {
			return fail(k.Line, f, "unknown field: want one of %s", strings.Join(fields, ", "))
		}
		if _, dup := lines[f]; dup {
			return fail(k.Line, f, "given twice (first on line %d)", lines[f])
		}
		lines[f] = v.Line
		var err error
		switch f {
		case "command":
			err = stringList(v, &d.Command)
		case "user":
			err = scalar(v, &d.User)
		case "primary":
			err = node(v, &d.Primary)
		case "backup":
			if v.Kind == yaml.ScalarNode {
				var n uint32
				if err = node(v, &n); err == nil {
					d.Backups = []uint32{n}
				}
				break
			}
			if v.Kind != yaml.SequenceNode {
				err = errors.New("want a node number or a list of them")
				break
			}
			for _, e := range v.Content {
				var n uint32
				if err = node(e, &n); err != nil {
					lines[f] = e.Line
					break
				}
				d.Backups = append(d.Backups, n)
			}
		case "placement":
			err = scalar(v, &d.Placement)
		case "retries":
			var s string
			if err = scalar(v, &s); err == nil {
				if d.Retries, err = strconv.Atoi(s); err != nil || d.Retries < 1 {
					err = fmt.Errorf("%.40q: want an integer 1..%d", s, MaxRetries)
				}
			}
		case "within", "check_interval":
			var s string
			var dur time.Duration
			if err = scalar(v, &s); err == nil {
				if dur, err = time.ParseDuration(s); err != nil || dur <= 0 {
					err = fmt.Errorf("%.40q: want a duration such as 60s", s)
				}
			}
			if f == "within" {
				d.Within = dur
			} else {
				d.CheckInterval = dur
			}
		case "check":
			err = scalar(v, &d.Check)
		}
		if err != nil {
			return fail(lines[f], f, "%v", err)
		}
	}
	if _, ok := lines["command"]; !ok {
		return fail(m.Line, "command", "missing: want the program and its arguments")
	}
	d.Defaults()
	if err := d.validate(func(f string) int { return lines[f] }); err != nil {
		return Decl{}, err
	}
	return d, nil
}

func scalar(v *yaml.Node, s *string) error {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return errors.New("want a single value")
	}
	*s = v.Value
	return nil
}

func node(v *yaml.Node, n *uint32) error {
	var s string
	if err := scalar(v, &s); err != nil {
		return errors.New("want a node number")
	}
	x, err := strconv.ParseUint(s, 10, 32)
	if err != nil || x < 1 || x > MaxNode {
		return fmt.Errorf("%.40q: want a node number 1..%d", s, MaxNode)
	}
	*n = uint32(x)
	return nil
}

func stringList(v *yaml.Node, out *[]string) error {
	if v.Kind != yaml.SequenceNode {
		return errors.New("want a list: the program, then its arguments")
	}
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode {
			return errors.New("want a list of strings")
		}
		*out = append(*out, e.Value)
	}
	return nil
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// yamlLine finds the line in a YAML error (0: none).
func yamlLine(err error) int {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func yamlMsg(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	return strings.TrimPrefix(lineRE.ReplaceAllString(s, ""), ": ")
}
