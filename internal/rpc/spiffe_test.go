package rpc

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/openssi/openssi/internal/rpc/rpctest"
)

func TestParseSPIFFEID(t *testing.T) {
	const td = "11111111-2222-3333-4444-555555555555.consul"
	tests := []struct {
		in      string
		want    SPIFFEID
		wantErr bool
	}{
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/openssi-clmsd",
			want: SPIFFEID{TrustDomain: td, Namespace: "default", Datacenter: "dc1", Service: "openssi-clmsd"}},
		{in: "spiffe://" + td + "/ap/part1/ns/default/dc/dc1/svc/web",
			want: SPIFFEID{TrustDomain: td, Partition: "part1", Namespace: "default", Datacenter: "dc1", Service: "web"}},
		{in: "spiffe://openssi/ns/n_1/dc/DC-2/svc/openssi-a.b",
			want: SPIFFEID{TrustDomain: "openssi", Namespace: "n_1", Datacenter: "DC-2", Service: "openssi-a.b"}},
		{in: "", wantErr: true},
		{in: "https://" + td + "/ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "SPIFFE://" + td + "/ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://" + td, wantErr: true},
		{in: "spiffe:///ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://Upper.consul/ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://user@" + td + "/ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://" + td + ":8443/ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/x?q=1", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/x#f", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/x/", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/a%2Fb", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/..", wantErr: true},
		{in: "spiffe://" + td + "/ns//dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://" + td + "/dc/dc1/ns/default/svc/x", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/agent/x", wantErr: true},
		{in: "spiffe://" + td + "/agent/client/dc/dc1/id/node1", wantErr: true},
		{in: "spiffe://" + td + "/ap/p/ns/default/dc/dc1/svc", wantErr: true},
		{in: "spiffe://" + td + "/xx/p/ns/default/dc/dc1/svc/x", wantErr: true},
		{in: "spiffe://" + td + "/ns/default/dc/dc1/svc/" + strings.Repeat("a", 3000), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSPIFFEID(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrBadSPIFFEID) {
					t.Fatalf("ParseSPIFFEID = %+v, %v; want ErrBadSPIFFEID", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/openssi-clmsd",
		"spiffe://td/ap/p/ns/n/dc/d/svc/s",
		"spiffe://td/ns/n/dc/d/svc/",
		"spiffe://td/agent/client/dc/dc1/id/node",
		"spiffe://a@b:1/ns/n?x#y",
		"spiffe://",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSPIFFEID(s)
		if err != nil {
			if !errors.Is(err, ErrBadSPIFFEID) {
				t.Fatalf("error %v does not wrap ErrBadSPIFFEID", err)
			}
			return
		}
		// Accepted IDs are canonical: they print back as the input and
		// contain nothing that could smuggle another path or host.
		if id.String() != s {
			t.Fatalf("String() = %q, input %q", id.String(), s)
		}
		if id.TrustDomain == "" || id.Namespace == "" || id.Datacenter == "" || id.Service == "" {
			t.Fatalf("accepted with empty part: %+v", id)
		}
		for _, part := range []string{id.TrustDomain, id.Partition, id.Namespace, id.Datacenter, id.Service} {
			if strings.ContainsAny(part, "/%?#@: ") {
				t.Fatalf("accepted part %q of %q", part, s)
			}
		}
	})
}

func TestVerifyPeer(t *testing.T) {
	const td = "cluster.consul"
	ca := newTestCA(t, "ca")
	other := newTestCA(t, "other ca")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	leaf := func(ca *rpctest.CA, uris ...string) []*x509.Certificate {
		certPEM, keyPEM := ca.Issue(t, uris...)
		c := tlsCert(t, certPEM, keyPEM)
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{x}
	}
	tests := []struct {
		name   string
		chain  []*x509.Certificate
		td     string
		want   string
		wantID string // "" = rejected
	}{
		{"openssi peer", leaf(ca, svcID(td, "openssi-dlmd.node2")), td, "", "openssi-dlmd.node2"},
		{"wanted service", leaf(ca, svcID(td, "openssi-clmsd.node1")), td, "openssi-clmsd", "openssi-clmsd.node1"},
		{"wrong service", leaf(ca, svcID(td, "openssi-dlmd.node2")), td, "openssi-clmsd", ""},
		{"several services, one wanted", leaf(ca, svcID(td, "openssi-dlmd.node1"), svcID(td, "openssi-clmsd.node1")), td, "openssi-clmsd", "openssi-clmsd.node1"},
		{"wanted identity", leaf(ca, svcID(td, "openssi-dlmd.node3")), td, "openssi-dlmd.node3", "openssi-dlmd.node3"},
		{"wanted identity, node name case-insensitive", leaf(ca, svcID(td, "openssi-dlmd.Node3")), td, "openssi-dlmd.node3", "openssi-dlmd.Node3"},
		{"node name with dots", leaf(ca, svcID(td, "openssi-dlmd.n3.example.org")), td, "openssi-dlmd.n3.example.org", "openssi-dlmd.n3.example.org"},
		{"another node than wanted", leaf(ca, svcID(td, "openssi-dlmd.node3")), td, "openssi-dlmd.node2", ""},
		{"a node whose name the wanted one starts with", leaf(ca, svcID(td, "openssi-dlmd.node3")), td, "openssi-dlmd.node", ""},
		{"bare service: names no node", leaf(ca, svcID(td, "openssi-dlmd")), td, "", ""},
		{"bare service wanted by service", leaf(ca, svcID(td, "openssi-dlmd")), td, "openssi-dlmd", ""},
		{"empty node", leaf(ca, svcID(td, "openssi-dlmd.")), td, "", ""},
		{"two nodes in one certificate", leaf(ca, svcID(td, "openssi-dlmd.node2"), svcID(td, "openssi-clmsd.node3")), td, "", ""},
		{"not openssi", leaf(ca, svcID(td, "web")), td, "", ""},
		{"not openssi, with a node", leaf(ca, svcID(td, "web.node1")), td, "", ""},
		{"bare prefix", leaf(ca, svcID(td, "openssi-")), td, "", ""},
		{"bare prefix with a node", leaf(ca, svcID(td, "openssi-.node1")), td, "", ""},
		{"no URI", leaf(ca), td, "", ""},
		{"other trust domain", leaf(ca, svcID("evil.consul", "openssi-clmsd.node1")), td, "", ""},
		{"any trust domain allowed", leaf(ca, svcID("evil.consul", "openssi-clmsd.node1")), "", "", "openssi-clmsd.node1"},
		{"trust domain case-insensitive", leaf(ca, svcID(td, "openssi-a.n")), "Cluster.Consul", "", "openssi-a.n"},
		{"other CA", leaf(other, svcID(td, "openssi-clmsd.node1")), td, "", ""},
		{"no certificate", nil, td, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := verifyPeer(tt.chain, roots, tt.td, x509.ExtKeyUsageClientAuth, tt.want)
			if tt.wantID == "" {
				if err == nil || !errors.Is(err, ErrPeerIdentity) {
					t.Fatalf("accepted %+v (err %v), want ErrPeerIdentity", id, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tt.wantID {
				t.Fatalf("identity = %q, want %q", id, tt.wantID)
			}
		})
	}
}
