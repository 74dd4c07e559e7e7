package consul

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ErrConfig is wrapped by the errors of [NewClient] for unusable options.
var ErrConfig = errors.New("invalid consul client options")

// Options are the settings of the HTTP API client of the local Consul agent.
// They mirror the `cluster.consul` section of openssi.yaml.
type Options struct {
	// Address is the agent's HTTP address, host:port, or its Unix socket,
	// unix:///path; "" means 127.0.0.1:8500 (or CONSUL_HTTP_ADDR, following
	// the Consul API's own defaults).
	Address string
	// Scheme is "http" (default) or "https".
	Scheme string
	// Token is the ACL token.
	Token string
	// TokenFile names a file holding the ACL token; it wins over Token.
	TokenFile string
	// CredentialsDir is the daemon's systemd credentials directory
	// ($CREDENTIALS_DIRECTORY, "" outside systemd). A non-empty
	// credential [TokenCredential] there wins over TokenFile and Token.
	CredentialsDir string
	// CAFile is the PEM CA bundle that verifies the agent's certificate.
	CAFile string
	// CertFile and KeyFile are the client certificate and key presented to
	// the agent (verify_incoming); both or neither.
	CertFile string
	// KeyFile is the private key of CertFile.
	KeyFile string
	// TLSServerName is the name expected in the agent's certificate when it
	// differs from the host in Address.
	TLSServerName string
}

// NewClient returns an API client for the agent described by o, with the
// token [ResolveToken] chooses. Fields left empty fall back to the Consul
// API's defaults, which read the standard CONSUL_HTTP_* environment
// variables (CONSUL_HTTP_TOKEN too when no token is chosen).
func NewClient(o Options) (*api.Client, error) {
	cfg := &api.Config{
		Address: o.Address,
		Scheme:  o.Scheme,
		Token:   o.Token,
		TLSConfig: api.TLSConfig{
			Address:  o.TLSServerName,
			CAFile:   o.CAFile,
			CertFile: o.CertFile,
			KeyFile:  o.KeyFile,
		},
	}
	switch o.Scheme {
	case "", "http", "https":
	default:
		return nil, fmt.Errorf("consul: scheme %q: %w: want http or https", o.Scheme, ErrConfig)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("consul: cert_file and key_file: %w: set both or neither", ErrConfig)
	}
	if strings.Contains(o.Address, "/") && !strings.Contains(o.Address, "://") {
		return nil, fmt.Errorf("consul: address %q: %w: want host:port", o.Address, ErrConfig)
	}
	tok, err := ResolveToken(o)
	if err != nil {
		return nil, err
	}
	cfg.Token = tok.Value
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul: client for %s: %w", o.Address, err)
	}
	return c, nil
}
