package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is matched (errors.Is) by every [*Error]: a setting has a value
// that is not allowed.
var ErrInvalid = errors.New("config: invalid value")

// Error reports one setting whose value is not allowed. Its message is one
// line, for example:
//
//	config: clmsd.node_number: "abc" is not valid: want an integer 0..1024 (0 = claim automatically)
type Error struct {
	// Key is the dotted setting name, e.g. "clmsd.node_number".
	Key string
	// Value is the offending value as given (shortened when very long).
	Value string
	// Allowed says what would be accepted, starting with "want".
	Allowed string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("config: %s: %q is not valid: %s", e.Key, e.Value, e.Allowed)
}

// Is reports whether target is [ErrInvalid].
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// allowed says, for every setting, what values it accepts. It is the text of
// [Error.Allowed]; a test checks it covers every field of [Config].
var allowed = map[string]string{
	"cluster":                        "want a mapping of cluster settings",
	"cluster.name":                   "want 1 to 63 characters from a-z, 0-9 and '-'",
	"cluster.log_level":              "want one of trace, debug, info, warn, error",
	"cluster.run_dir":                "want an absolute path",
	"cluster.state_dir":              "want an absolute path",
	"cluster.socket_group":           "want a group name or number, or empty",
	"cluster.advertise_address":      "want an IP address, or empty for the Consul agent's address",
	"cluster.consul":                 "want a mapping of Consul settings",
	"cluster.consul.address":         "want host:port with a port 1..65535",
	"cluster.consul.scheme":          "want http or https",
	"cluster.consul.token":           "want a string",
	"cluster.consul.token_file":      "want a file path",
	"cluster.consul.ca_file":         "want a file path",
	"cluster.consul.cert_file":       "want a file path (set together with cluster.consul.key_file)",
	"cluster.consul.key_file":        "want a file path (set together with cluster.consul.cert_file)",
	"cluster.consul.tls_server_name": "want a host name",
	"cluster.tls":                    "want a mapping of TLS settings",
	"cluster.tls.source":             "want connect or files",
	"cluster.tls.cert_file":          "want a file path (required when cluster.tls.source is files)",
	"cluster.tls.key_file":           "want a file path (required when cluster.tls.source is files)",
	"cluster.tls.ca_file":            "want a file path (required when cluster.tls.source is files)",
	"clmsd":                          "want a mapping of clmsd settings",
	"clmsd.node_number":              "want an integer 0..1024 (0 = claim automatically)",
	"clmsd.rpc_port":                 "want an integer 1..65535",
	"clmsd.skew_threshold":           "want a duration > 0 such as 100ms",
	"clmsd.skew_interval":            "want a duration of at least 100ms such as 5s",
	"dlmd":                           "want a mapping of dlmd settings",
	"dlmd.rpc_port":                  "want an integer 1..65535",
	"dlmd.deadlock_interval":         "want a duration of at least 10ms such as 1s",
	"dlmd.lease":                     "want a duration of at least 200ms such as 1s",
}

// invalid builds the *Error for key.
func invalid(key, value string) *Error {
	const max = 80
	if len(value) > max {
		value = value[:max] + "..."
	}
	a, ok := allowed[key]
	if !ok {
		a = "want a valid value"
	}
	return &Error{Key: key, Value: value, Allowed: a}
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	groupRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$`)
	hostRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
)

// LogLevels lists the accepted values of cluster.log_level, most verbose
// first.
var LogLevels = []string{"trace", "debug", "info", "warn", "error"}

// Validate checks every setting and returns the first bad one as an [*Error],
// or nil. [Load] calls it; call it yourself on a Config built in code.
func (c *Config) Validate() error {
	cl := &c.Cluster
	checks := []struct {
		key   string
		value string
		ok    bool
	}{
		{"cluster.name", cl.Name, nameRE.MatchString(cl.Name)},
		{"cluster.log_level", cl.LogLevel, isLogLevel(cl.LogLevel)},
		{"cluster.run_dir", cl.RunDir, filepath.IsAbs(cl.RunDir)},
		{"cluster.state_dir", cl.StateDir, filepath.IsAbs(cl.StateDir)},
		{"cluster.socket_group", cl.SocketGroup, cl.SocketGroup == "" || groupRE.MatchString(cl.SocketGroup)},
		{"cluster.advertise_address", cl.AdvertiseAddress, cl.AdvertiseAddress == "" || net.ParseIP(cl.AdvertiseAddress) != nil},
		{"cluster.consul.address", cl.Consul.Address, isHostPort(cl.Consul.Address)},
		{"cluster.consul.scheme", cl.Consul.Scheme, cl.Consul.Scheme == "http" || cl.Consul.Scheme == "https"},
		{"cluster.consul.cert_file", cl.Consul.CertFile, cl.Consul.CertFile != "" || cl.Consul.KeyFile == ""},
		{"cluster.consul.key_file", cl.Consul.KeyFile, cl.Consul.KeyFile != "" || cl.Consul.CertFile == ""},
		{"cluster.consul.tls_server_name", cl.Consul.TLSServerName, cl.Consul.TLSServerName == "" || hostRE.MatchString(cl.Consul.TLSServerName)},
		{"cluster.tls.source", cl.TLS.Source, cl.TLS.Source == "connect" || cl.TLS.Source == "files"},
		{"cluster.tls.cert_file", cl.TLS.CertFile, cl.TLS.Source != "files" || cl.TLS.CertFile != ""},
		{"cluster.tls.key_file", cl.TLS.KeyFile, cl.TLS.Source != "files" || cl.TLS.KeyFile != ""},
		{"cluster.tls.ca_file", cl.TLS.CAFile, cl.TLS.Source != "files" || cl.TLS.CAFile != ""},
		{"clmsd.node_number", strconv.Itoa(c.Clmsd.NodeNumber), c.Clmsd.NodeNumber >= 0 && c.Clmsd.NodeNumber <= 1024},
		{"clmsd.rpc_port", strconv.Itoa(c.Clmsd.RPCPort), c.Clmsd.RPCPort >= 1 && c.Clmsd.RPCPort <= 65535},
		{"clmsd.skew_threshold", c.Clmsd.SkewThreshold.String(), c.Clmsd.SkewThreshold > 0},
		{"clmsd.skew_interval", c.Clmsd.SkewInterval.String(), c.Clmsd.SkewInterval >= 100*time.Millisecond},
		{"dlmd.rpc_port", strconv.Itoa(c.Dlmd.RPCPort), c.Dlmd.RPCPort >= 1 && c.Dlmd.RPCPort <= 65535},
		{"dlmd.deadlock_interval", c.Dlmd.DeadlockInterval.String(), c.Dlmd.DeadlockInterval >= 10*time.Millisecond},
		{"dlmd.lease", c.Dlmd.Lease.String(), c.Dlmd.Lease >= 200*time.Millisecond},
	}
	for _, ch := range checks {
		if !ch.ok {
			return invalid(ch.key, ch.value)
		}
	}
	return nil
}

func isLogLevel(s string) bool {
	for _, l := range LogLevels {
		if s == l {
			return true
		}
	}
	return false
}

// isHostPort reports whether s is host:port with a non-empty host and a
// port 1..65535.
func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p >= 1 && p <= 65535
}
