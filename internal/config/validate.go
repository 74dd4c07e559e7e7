package config

import (
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/openssi/openssi/internal/settings"
)

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
	return settings.Checks(ClusterKey, cl,
		settings.Check{Key: "name", Value: cl.Name, OK: nameRE.MatchString(cl.Name)},
		settings.Check{Key: "log_level", Value: cl.LogLevel, OK: isLogLevel(cl.LogLevel)},
		settings.Check{Key: "run_dir", Value: cl.RunDir, OK: filepath.IsAbs(cl.RunDir)},
		settings.Check{Key: "state_dir", Value: cl.StateDir, OK: filepath.IsAbs(cl.StateDir)},
		settings.Check{Key: "socket_group", Value: cl.SocketGroup, OK: cl.SocketGroup == "" || groupRE.MatchString(cl.SocketGroup)},
		settings.Check{Key: "advertise_address", Value: cl.AdvertiseAddress, OK: cl.AdvertiseAddress == "" || net.ParseIP(cl.AdvertiseAddress) != nil},
		settings.Check{Key: "consul.address", Value: cl.Consul.Address, OK: isHostPort(cl.Consul.Address) || isUnixSocket(cl.Consul.Address)},
		settings.Check{Key: "consul.scheme", Value: cl.Consul.Scheme, OK: cl.Consul.Scheme == "http" || cl.Consul.Scheme == "https"},
		settings.Check{Key: "consul.cert_file", Value: cl.Consul.CertFile, OK: cl.Consul.CertFile != "" || cl.Consul.KeyFile == ""},
		settings.Check{Key: "consul.key_file", Value: cl.Consul.KeyFile, OK: cl.Consul.KeyFile != "" || cl.Consul.CertFile == ""},
		settings.Check{Key: "consul.tls_server_name", Value: cl.Consul.TLSServerName, OK: cl.Consul.TLSServerName == "" || hostRE.MatchString(cl.Consul.TLSServerName)},
		settings.Check{Key: "tls.source", Value: cl.TLS.Source, OK: cl.TLS.Source == "connect" || cl.TLS.Source == "files"},
		settings.Check{Key: "tls.cert_file", Value: cl.TLS.CertFile, OK: cl.TLS.Source != "files" || cl.TLS.CertFile != ""},
		settings.Check{Key: "tls.key_file", Value: cl.TLS.KeyFile, OK: cl.TLS.Source != "files" || cl.TLS.KeyFile != ""},
		settings.Check{Key: "tls.ca_file", Value: cl.TLS.CAFile, OK: cl.TLS.Source != "files" || cl.TLS.CAFile != ""},
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
		if err := s.Validate(c.values[s.Name]); err != nil {
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

// UnixScheme starts a consul.address naming the agent's Unix socket, as in
// Consul's own addresses.http and CONSUL_HTTP_ADDR.
const UnixScheme = "unix://"

// isUnixSocket reports whether s is unix:// followed by an absolute,
// clean path.
func isUnixSocket(s string) bool {
	p, ok := strings.CutPrefix(s, UnixScheme)
	return ok && strings.HasPrefix(p, "/") && len(p) > 1 && !strings.ContainsAny(p, " \t\n") && filepath.Clean(p) == p
}

// isHostPort reports whether s is host:port with a non-empty host and a
// port 1..65535.
func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && settings.IsPort(p)
}
