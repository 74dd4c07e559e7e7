package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/internal/consulacl"
	"github.com/openssi/openssi/internal/consulagent"
)

// Consul in the lab is locked down as the shipped example
// (/usr/share/doc/openssi/examples/consul.hcl) says to: ACLs on with
// default deny, gossip encryption, TLS on the servers' RPC, and the HTTP API
// on a root-only Unix socket. Its secrets are made here, on the host, and
// kept in the lab's state file (mode 0600); only what a node needs is
// written into it.

// Datacenter is the lab's Consul datacenter.
const Datacenter = "lab"

// ConsulSocket is where a node's Consul agent serves its HTTP API: a Unix
// socket only its owner (ConsulSocketOwner) and root can open. Consul hands a cached Connect leaf certificate
// to any caller of its API, whatever its token, so a TCP port on 127.0.0.1
// would give every local user the node's identity.
const ConsulSocket = "/run/consul/http.sock"

// ConsulSocketOwner owns the agent's socket (mode 0600): the system user
// clmsd and dlmd run as (the lab creates it before Consul first starts, so
// Consul finds it). vprocd, initfailover (CAP_DAC_OVERRIDE) and the consul
// command, as root with their capabilities, reach the socket whatever its
// owner.
const ConsulSocketOwner = daemonsUser

// daemonsUser is the system user of the OpenSSI daemons that need no
// privilege, as the openssi package's sysusers.d file makes it.
const daemonsUser = "openssi"

// sysusers are the lines of the openssi package's sysusers.d file that the
// lab applies to a node's disk before its first boot, so that the daemons'
// user exists before Consul first starts and can own its socket.
const sysusers = "g " + daemonsUser + " -\nu " + daemonsUser + " - \"OpenSSI daemons\" - -\n"

// ConsulTokenFile is where a node's daemons find their ACL token.
const ConsulTokenFile = "/etc/openssi/consul.token"

// ConsulRootTokenFile is where a node's root daemons (vprocd,
// initfailover) find the root token they publish their peer keys with
// (cluster.consul.root_token_file's default); root:root 0600, read by no
// daemon that runs as user openssi.
const ConsulRootTokenFile = "/etc/openssi/consul-root.token"

// ConsulSecrets are the lab-wide Consul secrets.
type ConsulSecrets struct {
	// ManagementToken is the servers' initial management token: the lab's
	// and the tests' key to everything; it never enters a node's disk
	// except the servers' Consul configuration.
	ManagementToken string `json:"management_token"`
	// GossipKey is the gossip encryption key (32 random bytes, base64).
	GossipKey string `json:"gossip_key"`
	// CACert and CAKey are the PEM CA of Consul's RPC TLS.
	CACert string `json:"ca_cert"`
	CAKey  string `json:"ca_key"`
}

// NodeTokens are the SecretIDs of one node's ACL tokens, chosen before the
// node boots and created in Consul once the servers have a leader.
type NodeTokens struct {
	// Agent is the Consul agent's own token: a node identity only.
	Agent string `json:"agent"`
	// Daemons is the OpenSSI daemons' token: consulacl's policy of the node.
	Daemons string `json:"daemons"`
	// Root is the node's root token: consulacl's root policy of the node,
	// for the root daemons' peer keys. "" in a lab made before it existed.
	Root string `json:"root,omitempty"`
}

func newConsulSecrets() (*ConsulSecrets, error) {
	mgmt, err := consulagent.NewSecretID()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("lab: gossip key: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "OpenSSI lab Consul CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("lab: CA certificate: %w", err)
	}
	keyPEM, err := ecKeyPEM(caKey)
	if err != nil {
		return nil, err
	}
	return &ConsulSecrets{
		ManagementToken: mgmt,
		GossipKey:       base64.StdEncoding.EncodeToString(key),
		CACert:          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CAKey:           keyPEM,
	}, nil
}

func newNodeTokens() (NodeTokens, error) {
	a, err := consulagent.NewSecretID()
	if err != nil {
		return NodeTokens{}, err
	}
	d, err := consulagent.NewSecretID()
	if err != nil {
		return NodeTokens{}, err
	}
	r, err := consulagent.NewSecretID()
	if err != nil {
		return NodeTokens{}, err
	}
	return NodeTokens{Agent: a, Daemons: d, Root: r}, nil
}

func ecKeyPEM(k *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("lab: marshal key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), nil
}

// serverCert issues a Consul server's RPC certificate: the name
// verify_server_hostname checks (server.<datacenter>.consul), localhost and
// the node's address.
func (s *ConsulSecrets) serverCert(n NodeState) (certPEM, keyPEM string, err error) {
	block, _ := pem.Decode([]byte(s.CACert))
	kblock, _ := pem.Decode([]byte(s.CAKey))
	if block == nil || kblock == nil {
		return "", "", errors.New("lab: the CA in the lab's state is not PEM")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", "", fmt.Errorf("lab: CA certificate: %w", err)
	}
	caKey, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return "", "", fmt.Errorf("lab: CA key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("lab: server key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "server." + Datacenter + ".consul"},
		DNSNames:     []string{"server." + Datacenter + ".consul", n.Name, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP(n.IP), net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("lab: server certificate of %s: %w", n.Name, err)
	}
	keyPEM, err = ecKeyPEM(key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), keyPEM, nil
}

// Consul returns an API client of a running node's Consul agent, through
// its socket seen from the host (/proc/<pid>/root/run/consul/http.sock),
// sending token ("" = the anonymous token). Tests use it with the lab's
// management token (State().Consul.ManagementToken).
func (l *Lab) Consul(node, token string) (*api.Client, error) {
	_, c, err := l.container(node)
	if err != nil {
		return nil, err
	}
	cfg := api.DefaultConfig()
	cfg.Address = fmt.Sprintf("unix:///proc/%d/root%s", c.PID(), ConsulSocket)
	cfg.Scheme, cfg.Token, cfg.TokenFile = "http", token, ""
	cl, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab: consul client of %s: %w", node, err)
	}
	return cl, nil
}

// consulEnv is what a root session in a node gets (lab exec, lab shell,
// Exec): the consul command reaches the agent's socket with the
// management token.
func (l *Lab) consulEnv() []string {
	s := l.State()
	if s == nil || s.Consul == nil {
		return nil
	}
	return []string{"CONSUL_HTTP_ADDR=unix://" + ConsulSocket, "CONSUL_HTTP_TOKEN=" + s.Consul.ManagementToken}
}

// bootstrapACL waits until the servers have a leader that accepts the
// management token, then creates every node's agent token (a node
// identity), daemons' token (consulacl's policy, the node's number
// pinned) and root token (consulacl's root policy) with the SecretIDs
// already written into the nodes.
func (l *Lab) bootstrapACL(ctx context.Context) error {
	s := l.State()
	var server string
	for _, n := range s.Nodes {
		if n.Server {
			server = n.Name
			break
		}
	}
	c, err := l.Consul(server, s.Consul.ManagementToken)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	w := (&api.WriteOptions{}).WithContext(ctx)
	for {
		// Policy reads need a leader and an ACL system that accepts the
		// management token.
		_, _, last := c.ACL().PolicyList(q)
		if last == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: the Consul servers did not accept the management token in time: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for i, n := range s.Nodes {
		rules, err := consulacl.NodeRules(n.Name, i+1)
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if err := consulagent.CreatePolicyToken(c.ACL(), w, &api.ACLPolicy{
			Name:        consulacl.PolicyName(n.Name),
			Description: fmt.Sprintf("OpenSSI daemons of %s (node %d)", n.Name, i+1),
			Rules:       rules,
		}, n.Tokens.Daemons, "OpenSSI daemons of "+n.Name); err != nil {
			return fmt.Errorf("lab: %s: %w", n.Name, err)
		}
		if n.Tokens.Root != "" {
			rootRules, err := consulacl.RootRules(n.Name)
			if err != nil {
				return fmt.Errorf("lab: %w", err)
			}
			if err := consulagent.CreatePolicyToken(c.ACL(), w, &api.ACLPolicy{
				Name:        consulacl.RootPolicyName(n.Name),
				Description: fmt.Sprintf("OpenSSI root daemons of %s: their peer keys", n.Name),
				Rules:       rootRules,
			}, n.Tokens.Root, "OpenSSI root daemons of "+n.Name); err != nil {
				return fmt.Errorf("lab: %s: %w", n.Name, err)
			}
		}
		if _, _, err := c.ACL().TokenCreate(&api.ACLToken{
			SecretID:       n.Tokens.Agent,
			Description:    "Consul agent of " + n.Name,
			NodeIdentities: []*api.ACLNodeIdentity{{NodeName: n.Name, Datacenter: Datacenter}},
		}, w); err != nil {
			return fmt.Errorf("lab: create the agent token of %s: %w", n.Name, err)
		}
	}
	return nil
}
