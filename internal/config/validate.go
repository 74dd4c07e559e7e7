package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// newError builds the *Error for key, shortening a long value.
func newError(key, value, allowed string) *Error {
	const max = 80
	if len(value) > max {
		value = value[:max] + "..."
	}
	return &Error{Key: key, Value: value, Allowed: allowed}
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	groupRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$`)
	hostRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
)

// LogLevels lists the accepted values of cluster.log_level, most verbose
// first.
var LogLevels = []string{"trace", "debug", "info", "warn", "error"}

// Validate checks the shared settings and returns the first bad one as an
// [*Error], or nil.
func (cl *Cluster) Validate() error {
	return Checks(ClusterKey, cl,
		Check{"name", cl.Name, nameRE.MatchString(cl.Name)},
		Check{"log_level", cl.LogLevel, isLogLevel(cl.LogLevel)},
		Check{"run_dir", cl.RunDir, filepath.IsAbs(cl.RunDir)},
		Check{"state_dir", cl.StateDir, filepath.IsAbs(cl.StateDir)},
		Check{"socket_group", cl.SocketGroup, cl.SocketGroup == "" || groupRE.MatchString(cl.SocketGroup)},
		Check{"advertise_address", cl.AdvertiseAddress, cl.AdvertiseAddress == "" || net.ParseIP(cl.AdvertiseAddress) != nil},
		Check{"consul.address", cl.Consul.Address, isHostPort(cl.Consul.Address)},
		Check{"consul.scheme", cl.Consul.Scheme, cl.Consul.Scheme == "http" || cl.Consul.Scheme == "https"},
		Check{"consul.cert_file", cl.Consul.CertFile, cl.Consul.CertFile != "" || cl.Consul.KeyFile == ""},
		Check{"consul.key_file", cl.Consul.KeyFile, cl.Consul.KeyFile != "" || cl.Consul.CertFile == ""},
		Check{"consul.tls_server_name", cl.Consul.TLSServerName, cl.Consul.TLSServerName == "" || hostRE.MatchString(cl.Consul.TLSServerName)},
		Check{"tls.source", cl.TLS.Source, cl.TLS.Source == "connect" || cl.TLS.Source == "files"},
		Check{"tls.cert_file", cl.TLS.CertFile, cl.TLS.Source != "files" || cl.TLS.CertFile != ""},
		Check{"tls.key_file", cl.TLS.KeyFile, cl.TLS.Source != "files" || cl.TLS.KeyFile != ""},
		Check{"tls.ca_file", cl.TLS.CAFile, cl.TLS.Source != "files" || cl.TLS.CAFile != ""},
	)
}

// Validate checks the shared section, then every daemon section in the
// order they were given to [Load] or [Defaults], and returns the first bad
// setting as an [*Error], or nil.
func (c *Config) Validate() error {
	if err := c.Cluster.Validate(); err != nil {
		return err
	}
	for _, s := range c.sections {
		if err := s.validate(c.values[s.Name]); err != nil {
			return err
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

// IsPort reports whether p is a TCP or UDP port, 1..65535.
func IsPort(p int) bool { return p >= 1 && p <= 65535 }

// isHostPort reports whether s is host:port with a non-empty host and a
// port 1..65535.
func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && IsPort(p)
}
