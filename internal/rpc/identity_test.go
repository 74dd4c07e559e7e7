package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/openssi/openssi/internal/rpc/rpctest"
)

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		in   string
		want Identity // zero: an error
	}{
		{"openssi-dlmd.node3", Identity{Service: "openssi-dlmd", Node: "node3"}},
		{"openssi-clmsd.Node-3", Identity{Service: "openssi-clmsd", Node: "Node-3"}},
		{"openssi-dlmd.n3.example.org", Identity{Service: "openssi-dlmd", Node: "n3.example.org"}},
		{"openssi-dlmd", Identity{}},
		{"openssi-dlmd.", Identity{}},
		{"openssi-.node3", Identity{}},
		{"web.node3", Identity{}},
		{".node3", Identity{}},
		{"", Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIdentity(tt.in)
			if tt.want == (Identity{}) {
				if !errors.Is(err, ErrBadIdentity) {
					t.Fatalf("ParseIdentity(%q) = %+v, %v; want ErrBadIdentity", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseIdentity(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in || NodeIdentity(got.Service, got.Node) != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestIdentityMatches(t *testing.T) {
	id := Identity{Service: "openssi-dlmd", Node: "Node3"}
	tests := []struct {
		want  string
		match bool
	}{
		{"openssi-dlmd", true},
		{"openssi-dlmd.node3", true},
		{"openssi-dlmd.NODE3", true},
		{"openssi-dlmd.node2", false},
		{"openssi-dlmd.node", false},
		{"openssi-dlmd.node33", false},
		{"openssi-dlmd.", false},
		{"openssi-clmsd", false},
		{"openssi-clmsd.node3", false},
	}
	for _, tt := range tests {
		if got := id.Matches(tt.want); got != tt.match {
			t.Errorf("%s matches %q = %v, want %v", id, tt.want, got, tt.match)
		}
	}
	if !id.OnNode("node3") || id.OnNode("") || id.OnNode("node2") {
		t.Error("OnNode")
	}
}

// TestPeerIdentityOneNode: the node a handler authorises is the node the
// handshake verified. A certificate whose first identity is of a foreign
// trust domain and names another node than its verified one names no
// node at all; identities of several daemons of one node are fine.
func TestPeerIdentityOneNode(t *testing.T) {
	ca := rpctest.NewCA(t, "ca")
	foreign := "spiffe://elsewhere.test/ns/default/dc/dc1/svc/openssi-dlmd.node2"
	for _, tc := range []struct {
		name string
		uris []string
		want string // the node, "" when refused
	}{
		{"one identity", []string{rpctest.SPIFFE("openssi-dlmd.node3")}, "node3"},
		{"two daemons of one node", []string{rpctest.SPIFFE("openssi-clmsd.node3"), rpctest.SPIFFE("openssi-dlmd.node3")}, "node3"},
		{"a foreign identity of another node first", []string{foreign, rpctest.SPIFFE("openssi-dlmd.node3")}, ""},
		{"two nodes", []string{rpctest.SPIFFE("openssi-dlmd.node3"), rpctest.SPIFFE("openssi-dlmd.node2")}, ""},
	} {
		certPEM, _ := ca.Issue(t, tc.uris...)
		block, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		p := &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}}
		id, ok := peerIdentityOf(p)
		if got := map[bool]string{true: id.Node}[ok]; got != tc.want {
			t.Errorf("%s: node %q (ok %v), want %q", tc.name, id.Node, ok, tc.want)
		}
	}
}
