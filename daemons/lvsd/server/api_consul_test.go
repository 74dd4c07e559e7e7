package server

import (
	"context"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
	lvsv1 "github.com/openssi/openssi/proto/lvs/v1"
)

// TestAddPortChecksConsul: ssi vip port add on a node whose view lags
// behind Consul (another node added the port a moment ago, the watch has
// not delivered it) neither overwrites that entry nor registers the other
// protocol on the same number: it checks Consul and writes with
// check-and-set.
func TestAddPortChecksConsul(t *testing.T) {
	c := consultest.Start(t, consulagent.Options{Servers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := consul.NewKV(c.Agents[0].Client())
	// Another node's adds, which this node has not seen.
	if err := kv.Put(ctx, lvsdspec.KVPorts+"tcp-80", PortRecord{ProxyProtocol: true}); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, lvsdspec.KVPorts+"udp-81", PortRecord{}); err != nil {
		t.Fatal(err)
	}
	a := NewAPI(New(Config{Self: 1, KV: kv}))
	root := callerCtx(0)
	for _, tc := range []struct {
		req  *lvsv1.AddPortRequest
		code codes.Code
	}{
		{&lvsv1.AddPortRequest{Port: "tcp/80"}, codes.AlreadyExists},
		{&lvsv1.AddPortRequest{Port: "tcp/81"}, codes.AlreadyExists},
		{&lvsv1.AddPortRequest{Port: "udp/80", Replace: true}, codes.AlreadyExists},
		{&lvsv1.AddPortRequest{Port: "tcp/82"}, codes.OK},
		{&lvsv1.AddPortRequest{Port: "tcp/80", Replace: true, Users: []string{"nobody", "1000"}}, codes.OK},
		{&lvsv1.AddPortRequest{Port: "tcp/83", Users: []string{"no-such-user-here"}}, codes.InvalidArgument},
		{&lvsv1.AddPortRequest{Port: "tcp/83", Users: []string{"a b"}}, codes.InvalidArgument},
	} {
		if _, err := a.AddPort(root, tc.req); status.Code(err) != tc.code {
			t.Errorf("add %v: %v, want %v", tc.req, err, tc.code)
		}
	}
	var r PortRecord
	if _, found, err := kv.Get(ctx, lvsdspec.KVPorts+"tcp-80", &r); err != nil || !found || r.ProxyProtocol || !reflect.DeepEqual(r.Users, []string{"nobody", "1000"}) {
		t.Errorf("tcp-80 after the replace: %+v %v %v", r, found, err)
	}
	if _, found, err := kv.Get(ctx, lvsdspec.KVPorts+"udp-80", &r); err != nil || found {
		t.Errorf("udp-80 registered next to tcp-80: %v %v", found, err)
	}
}
