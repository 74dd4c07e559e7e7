package consulagent

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// NewSecretID returns a random UUID (version 4), the form of a Consul ACL
// token's SecretID: the lab and the tests choose a token's secret before
// Consul creates the token, so that it can be written into a node first.
func NewSecretID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("consulagent: secret ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// ACLSettings are an agent's ACL configuration.
type ACLSettings struct {
	// Agent is the agent's own token (tokens.agent): what it registers its
	// node and services with. "" leaves it unset.
	Agent string
	// InitialManagement is the servers' initial management token; only
	// servers get it.
	InitialManagement string
	// Server marks a server agent.
	Server bool
}

// ACLHCL renders the acl block: ACLs on, default deny (a request without a
// token, or with an unknown one, gets nothing), and down_policy
// extend-cache (an agent cut off from the servers keeps applying the
// policies it has cached, so a partition does not stop the daemons of the
// nodes that still form a majority elsewhere). Tokens are never persisted
// by the agent: they come from the configuration only.
func ACLHCL(s ACLSettings) string {
	var b strings.Builder
	b.WriteString("acl {\n  enabled = true\n  default_policy = \"deny\"\n  down_policy = \"extend-cache\"\n  enable_token_persistence = false\n  tokens {\n")
	if s.Server && s.InitialManagement != "" {
		fmt.Fprintf(&b, "    initial_management = %q\n", s.InitialManagement)
	}
	if s.Agent != "" {
		fmt.Fprintf(&b, "    agent = %q\n", s.Agent)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// CreatePolicyToken creates policy and then the token with SecretID secret
// that carries it (and nothing else). The error names which of the two
// failed; callers add whose they were.
func CreatePolicyToken(acl *api.ACL, w *api.WriteOptions, policy *api.ACLPolicy, secret, description string) error {
	p, _, err := acl.PolicyCreate(policy, w)
	if err != nil {
		return fmt.Errorf("create the policy %s: %w", policy.Name, err)
	}
	if _, _, err := acl.TokenCreate(&api.ACLToken{
		SecretID:    secret,
		Description: description,
		Policies:    []*api.ACLTokenPolicyLink{{ID: p.ID}},
	}, w); err != nil {
		return fmt.Errorf("create the token %q: %w", description, err)
	}
	return nil
}
