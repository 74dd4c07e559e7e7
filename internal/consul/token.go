package consul

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenCredential is the name of the systemd credential that carries a
// node's ACL token: the units load it from /etc/openssi/consul.token
// (root:root 0600) with LoadCredential=, which a daemon running as its own
// user could not read itself, and default it to empty when that file does
// not exist.
const TokenCredential = "consul.token"

// Where a token came from, for [Token].Source.
const (
	FromCredential = "credential"
	FromTokenFile  = "token_file"
	FromToken      = "token"
	FromNone       = "none"
)

// Token is the ACL token a client sends and where it came from.
type Token struct {
	// Value is the token; "" sends none (the agent's default token, or
	// CONSUL_HTTP_TOKEN, applies).
	Value string
	// Source is FromCredential, FromTokenFile, FromToken or FromNone.
	Source string
	// EmptyCredential reports that the credential was there but empty
	// (the unit's default on a node without the token file), so the
	// settings were used instead.
	EmptyCredential bool
}

// ResolveToken chooses the ACL token of o, first of:
//
//  1. the credential TokenCredential in o.CredentialsDir, trimmed, when it
//     exists and is not empty; a credential that exists but is empty is
//     the unit's default for a node without a token file and counts as
//     absent;
//  2. the file o.TokenFile, trimmed: unreadable or empty is an error;
//  3. o.Token;
//  4. no token.
func ResolveToken(o Options) (Token, error) {
	var t Token
	if o.CredentialsDir != "" {
		b, err := os.ReadFile(filepath.Join(o.CredentialsDir, TokenCredential))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return Token{}, fmt.Errorf("consul: credential %s: %w", TokenCredential, err)
		case strings.TrimSpace(string(b)) != "":
			return Token{Value: strings.TrimSpace(string(b)), Source: FromCredential}, nil
		default:
			t.EmptyCredential = true
		}
	}
	switch {
	case o.TokenFile != "":
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return Token{}, fmt.Errorf("consul: token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return Token{}, fmt.Errorf("consul: token file %s: %w: empty", o.TokenFile, ErrConfig)
		}
		t.Value, t.Source = tok, FromTokenFile
	case o.Token != "":
		t.Value, t.Source = o.Token, FromToken
	default:
		t.Source = FromNone
	}
	return t, nil
}
