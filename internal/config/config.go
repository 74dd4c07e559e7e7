package config

import "github.com/openssi/openssi/internal/settings"

// DefaultPath is where the daemons read their configuration file from when no
// other path is given. A missing file at this path is not an error: the
// defaults (and the environment and flags) are used.
const DefaultPath = "/etc/openssi/openssi.yaml"

// Config is the whole configuration file: the `cluster:` section every
// daemon shares, and one section per daemon, each decoded into the daemon's
// own Config type (see [Section]). [Load] builds it.
type Config struct {
	// Cluster holds the settings every daemon shares (YAML `cluster:`).
	Cluster Cluster
	// sections are the daemon sections, in the order given to Load.
	sections []Section
	// values maps a daemon's name to a pointer to its section's struct.
	values map[string]any
}

// Section returns the daemon section named name (a pointer to the daemon's
// Config struct), or nil when the configuration has no such section. A
// daemon's own package wraps it in a typed accessor.
func (c *Config) Section(name string) any { return c.values[name] }

// SectionOf returns the section named name as a T, the daemon's Config
// type; it panics when the section is missing or of another type, which is
// a wiring mistake caught by the first test that starts the daemon.
func SectionOf[T any](c *Config, name string) T { return settings.Of[T](c, name) }

// Defaults returns the configuration used when nothing overrides it, for
// the given daemon sections. It is valid as returned.
func Defaults(sections []Section) *Config {
	c := &Config{Cluster: DefaultCluster(), sections: sections, values: map[string]any{}}
	for _, s := range sections {
		c.values[s.Name] = s.Default()
	}
	return c
}

// Cluster holds the settings every OpenSSI daemon on a node reads. The want
// tag of each field says what it accepts (the text of [Error.Allowed]).
type Cluster struct {
	// Name names the cluster; it must match [a-z0-9-]{1,63}. All nodes of a
	// cluster use the same name. Default "openssi".
	Name string `mapstructure:"name" want:"1 to 63 characters from a-z, 0-9 and '-'"`
	// LogLevel is the least severe level that is logged: trace, debug, info,
	// warn or error. It is re-read on SIGHUP. Default "info".
	LogLevel string `mapstructure:"log_level" want:"one of trace, debug, info, warn, error"`
	// RunDir is the absolute directory holding the daemons' local API
	// sockets (<RunDir>/<daemon>.sock). Default "/run/openssi".
	RunDir string `mapstructure:"run_dir" want:"an absolute path"`
	// StateDir is the absolute directory for state that survives a restart
	// (clmsd keeps the node number in <StateDir>/node). Default
	// "/var/lib/openssi".
	StateDir string `mapstructure:"state_dir" want:"an absolute path"`
	// SocketGroup is the group that owns the local sockets (mode 0660), a
	// group name or numeric id. When the group does not exist the sockets
	// keep root's group and a warning is logged; "" leaves them with root's
	// group. Default "openssi".
	SocketGroup string `mapstructure:"socket_group" want:"a group name or number, or empty"`
	// AdvertiseAddress is the IP address peers use to reach this node's
	// daemons. "" means the address of the local Consul agent. Default "".
	AdvertiseAddress string `mapstructure:"advertise_address" want:"an IP address, or empty for the Consul agent's address"`
	// Consul says how to reach the local Consul agent.
	Consul Consul `mapstructure:"consul" want:"a mapping of Consul settings"`
	// TLS says where the inter-node mutual-TLS certificates come from.
	TLS TLS `mapstructure:"tls" want:"a mapping of TLS settings"`
}

// Consul says how a daemon reaches its local Consul agent. The fields mirror
// the CONSUL_HTTP_* settings of the Consul API client.
type Consul struct {
	// Address is the agent's HTTP(S) API as host:port, or its Unix socket
	// as unix:///path (Consul's addresses.http). Default "127.0.0.1:8500".
	Address string `mapstructure:"address" want:"host:port with a port 1..65535, or unix:///absolute/path"`
	// Scheme is http or https. Default "http".
	Scheme string `mapstructure:"scheme" want:"http or https"`
	// Token is the ACL token sent with every request. Default "" (the
	// agent's default token). A non-empty systemd credential consul.token
	// (the packaged units load /etc/openssi/consul.token) wins over Token
	// and TokenFile: see internal/consul.ResolveToken.
	Token string `mapstructure:"token" want:"a string"`
	// TokenFile is a file holding the ACL token, read instead of Token by
	// the daemon's own user (openssi under the packaged units). Default "".
	TokenFile string `mapstructure:"token_file" want:"a file path"`
	// RootTokenFile holds the node's root token, read only by the daemons
	// that run as root (vprocd, initfailover) to publish their peer keys
	// (internal/rootkey); it must be root-only (root:root 0600) and never
	// handed to the daemons' user. A missing file leaves the daemons'
	// token to try, which Consul refuses when ACLs are on; "" reads none.
	// Default "/etc/openssi/consul-root.token".
	RootTokenFile string `mapstructure:"root_token_file" want:"a file path, or empty"`
	// CAFile is the CA bundle that verifies the agent's certificate when
	// Scheme is https. Default "" (the system roots).
	CAFile string `mapstructure:"ca_file" want:"a file path"`
	// CertFile is the client certificate presented to the agent; it must be
	// set together with KeyFile. Default "".
	CertFile string `mapstructure:"cert_file" want:"a file path (set together with cluster.consul.key_file)"`
	// KeyFile is the private key of CertFile. Default "".
	KeyFile string `mapstructure:"key_file" want:"a file path (set together with cluster.consul.cert_file)"`
	// TLSServerName is the name expected in the agent's certificate when it
	// differs from the host of Address. Default "".
	TLSServerName string `mapstructure:"tls_server_name" want:"a host name"`
}

// TLS says where the certificates for inter-node gRPC come from.
type TLS struct {
	// Source is "connect" (leaf certificates from Consul's built-in CA
	// through the agent's connect/ca/leaf API) or "files" (CertFile,
	// KeyFile and CAFile, all three required). Default "connect".
	Source string `mapstructure:"source" want:"connect or files"`
	// CertFile is this node's certificate (PEM) when Source is files.
	// Default "".
	CertFile string `mapstructure:"cert_file" want:"a file path (required when cluster.tls.source is files)"`
	// KeyFile is the private key of CertFile (PEM) when Source is files.
	// Default "".
	KeyFile string `mapstructure:"key_file" want:"a file path (required when cluster.tls.source is files)"`
	// CAFile is the CA bundle (PEM) that verifies peers when Source is
	// files. Default "".
	CAFile string `mapstructure:"ca_file" want:"a file path (required when cluster.tls.source is files)"`
}

// ClusterKey is the top-level key of the shared section.
const ClusterKey = "cluster"

// DefaultCluster returns the shared settings used when nothing overrides
// them. They are valid as returned.
func DefaultCluster() Cluster {
	return Cluster{
		Name:        "openssi",
		LogLevel:    "info",
		RunDir:      "/run/openssi",
		StateDir:    "/var/lib/openssi",
		SocketGroup: "openssi",
		Consul: Consul{
			Address:       "127.0.0.1:8500",
			Scheme:        "http",
			RootTokenFile: "/etc/openssi/consul-root.token",
		},
		TLS: TLS{
			Source: "connect",
		},
	}
}
