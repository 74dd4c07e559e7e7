package config

import "time"

// DefaultPath is where the daemons read their configuration file from when no
// other path is given. A missing file at this path is not an error: the
// defaults (and the environment and flags) are used.
const DefaultPath = "/etc/openssi/openssi.yaml"

// Config is the whole configuration file. Each field is a section of the
// YAML file named by its mapstructure tag.
type Config struct {
	// Cluster holds the settings every daemon shares (YAML `cluster:`).
	Cluster Cluster `mapstructure:"cluster"`
	// Clmsd holds the settings of the membership daemon (YAML `clmsd:`).
	Clmsd Clmsd `mapstructure:"clmsd"`
	// Dlmd holds the settings of the lock manager (YAML `dlmd:`).
	Dlmd Dlmd `mapstructure:"dlmd"`
}

// Cluster holds the settings every OpenSSI daemon on a node reads.
type Cluster struct {
	// Name names the cluster; it must match [a-z0-9-]{1,63}. All nodes of a
	// cluster use the same name. Default "openssi".
	Name string `mapstructure:"name"`
	// LogLevel is the least severe level that is logged: trace, debug, info,
	// warn or error. It is re-read on SIGHUP. Default "info".
	LogLevel string `mapstructure:"log_level"`
	// RunDir is the absolute directory holding the daemons' local API
	// sockets (<RunDir>/<daemon>.sock). Default "/run/openssi".
	RunDir string `mapstructure:"run_dir"`
	// StateDir is the absolute directory for state that survives a restart
	// (clmsd keeps the node number in <StateDir>/node). Default
	// "/var/lib/openssi".
	StateDir string `mapstructure:"state_dir"`
	// SocketGroup is the group that owns the local sockets (mode 0660), a
	// group name or numeric id. When the group does not exist the sockets
	// keep root's group and a warning is logged; "" leaves them with root's
	// group. Default "openssi".
	SocketGroup string `mapstructure:"socket_group"`
	// AdvertiseAddress is the IP address peers use to reach this node's
	// daemons. "" means the address of the local Consul agent. Default "".
	AdvertiseAddress string `mapstructure:"advertise_address"`
	// Consul says how to reach the local Consul agent.
	Consul Consul `mapstructure:"consul"`
	// TLS says where the inter-node mutual-TLS certificates come from.
	TLS TLS `mapstructure:"tls"`
}

// Consul says how a daemon reaches its local Consul agent. The fields mirror
// the CONSUL_HTTP_* settings of the Consul API client.
type Consul struct {
	// Address is the agent's HTTP(S) API as host:port. Default
	// "127.0.0.1:8500".
	Address string `mapstructure:"address"`
	// Scheme is http or https. Default "http".
	Scheme string `mapstructure:"scheme"`
	// Token is the ACL token sent with every request. Default "" (the
	// agent's default token).
	Token string `mapstructure:"token"`
	// TokenFile is a file holding the ACL token, read instead of Token.
	// Default "".
	TokenFile string `mapstructure:"token_file"`
	// CAFile is the CA bundle that verifies the agent's certificate when
	// Scheme is https. Default "" (the system roots).
	CAFile string `mapstructure:"ca_file"`
	// CertFile is the client certificate presented to the agent; it must be
	// set together with KeyFile. Default "".
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the private key of CertFile. Default "".
	KeyFile string `mapstructure:"key_file"`
	// TLSServerName is the name expected in the agent's certificate when it
	// differs from the host of Address. Default "".
	TLSServerName string `mapstructure:"tls_server_name"`
}

// TLS says where the certificates for inter-node gRPC come from.
type TLS struct {
	// Source is "connect" (leaf certificates from Consul's built-in CA
	// through the agent's connect/ca/leaf API) or "files" (CertFile,
	// KeyFile and CAFile, all three required). Default "connect".
	Source string `mapstructure:"source"`
	// CertFile is this node's certificate (PEM) when Source is files.
	// Default "".
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the private key of CertFile (PEM) when Source is files.
	// Default "".
	KeyFile string `mapstructure:"key_file"`
	// CAFile is the CA bundle (PEM) that verifies peers when Source is
	// files. Default "".
	CAFile string `mapstructure:"ca_file"`
}

// Clmsd holds the settings of the cluster membership daemon.
type Clmsd struct {
	// NodeNumber is this node's number, 1..1024. 0 means claim a free number
	// automatically on first start and keep it in <StateDir>/node. Default 0.
	NodeNumber int `mapstructure:"node_number"`
	// RPCPort is the TCP port of clmsd's inter-node gRPC server, 1..65535.
	// Default 7101.
	RPCPort int `mapstructure:"rpc_port"`
	// SkewThreshold is the clock offset from a peer above which a skew
	// warning is raised; it must be > 0. Default 100ms.
	SkewThreshold time.Duration `mapstructure:"skew_threshold"`
	// SkewInterval is how often peers' clocks are sampled; it must be at
	// least 100ms. Default 5s.
	SkewInterval time.Duration `mapstructure:"skew_interval"`
}

// Dlmd holds the settings of the distributed lock manager.
type Dlmd struct {
	// RPCPort is the TCP port of dlmd's inter-node gRPC server (lock
	// traffic between nodes), 1..65535. Default 7102.
	RPCPort int `mapstructure:"rpc_port"`
	// DeadlockInterval is how often the coordinator looks for deadlocks
	// across the cluster (the VMS deadlock wait); at least 10ms. Default 1s.
	DeadlockInterval time.Duration `mapstructure:"deadlock_interval"`
	// Lease is how long a node's locks stay valid without contact with a
	// majority of the UP nodes' dlmd: past it the node drops its locks
	// (clients are told), and the others wait that long after their last
	// contact with a lost node before granting what it held. At least
	// 200ms. Default 1s.
	Lease time.Duration `mapstructure:"lease"`
}

// Default returns the configuration used when nothing overrides it. It is
// valid as returned.
func Default() Config {
	return Config{
		Cluster: Cluster{
			Name:        "openssi",
			LogLevel:    "info",
			RunDir:      "/run/openssi",
			StateDir:    "/var/lib/openssi",
			SocketGroup: "openssi",
			Consul: Consul{
				Address: "127.0.0.1:8500",
				Scheme:  "http",
			},
			TLS: TLS{
				Source: "connect",
			},
		},
		Clmsd: Clmsd{
			NodeNumber:    0,
			RPCPort:       7101,
			SkewThreshold: 100 * time.Millisecond,
			SkewInterval:  5 * time.Second,
		},
		Dlmd: Dlmd{
			RPCPort:          7102,
			DeadlockInterval: time.Second,
			Lease:            time.Second,
		},
	}
}
