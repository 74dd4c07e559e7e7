package rpc

import (
	"context"
	"errors"
	"maps"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listener opens a TCP port for the health check to find.
func listener(t *testing.T) (ip string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func TestRegisterLookupPeers(t *testing.T) {
	client := startConsul(t)
	ctx := context.Background()

	ip, port := listener(t)
	dereg, err := Register(ctx, client, "clmsd", 3, ip, port)
	if err != nil {
		t.Fatal(err)
	}
	want := net.JoinHostPort(ip, strconv.Itoa(port))

	svc, _, err := client.Agent().Service("openssi-clmsd", nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Service != "openssi-clmsd" || svc.Meta[MetaNode] != "3" || svc.Port != port {
		t.Fatalf("registered %+v", svc)
	}

	waitFor(t, 15*time.Second, "the TCP check to pass", func() bool {
		addr, err := Lookup(ctx, client, "clmsd", 3)
		return err == nil && addr == want
	})
	peers, err := Peers(ctx, client, "clmsd")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(peers, map[int]string{3: want}) {
		t.Errorf("Peers = %v, want {3: %s}", peers, want)
	}
	if _, err := Lookup(ctx, client, "clmsd", 4); !errors.Is(err, ErrNoPeer) {
		t.Errorf("Lookup of node 4: %v, want ErrNoPeer", err)
	}
	if _, err := Lookup(ctx, client, "dlmd", 3); !errors.Is(err, ErrNoPeer) {
		t.Errorf("Lookup of an unregistered daemon: %v, want ErrNoPeer", err)
	}

	// An empty address means the agent's own address.
	_, port2 := listener(t)
	dereg2, err := Register(ctx, client, "dlmd", 3, "", port2)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "dlmd on the agent address", func() bool {
		addr, err := Lookup(ctx, client, "dlmd", 3)
		return err == nil && addr == net.JoinHostPort("127.0.0.1", strconv.Itoa(port2))
	})
	if err := dereg2(ctx); err != nil {
		t.Fatal(err)
	}

	// A daemon whose port does not answer is not in the healthy set.
	deadPort := freePorts(t, 1)[0] // nothing listens
	if _, err := Register(ctx, client, "vprocd", 5, "127.0.0.1", deadPort); err != nil {
		t.Fatal(err)
	}
	// The check starts critical and can only stay so.
	if _, err := Lookup(ctx, client, "vprocd", 5); !errors.Is(err, ErrNoPeer) {
		t.Errorf("Lookup of a daemon failing its check: %v, want ErrNoPeer", err)
	}
	// LookupRegistered still finds it (its checks may only lag).
	if addr, err := LookupRegistered(ctx, client, "vprocd", 5); err != nil || addr != net.JoinHostPort("127.0.0.1", strconv.Itoa(deadPort)) {
		t.Errorf("LookupRegistered of a daemon failing its check = %q, %v", addr, err)
	}
	if addr, err := LookupRegistered(ctx, client, "clmsd", 3); err != nil || addr != want {
		t.Errorf("LookupRegistered of a healthy daemon = %q, %v, want %s", addr, err, want)
	}
	if _, err := LookupRegistered(ctx, client, "vprocd", 6); !errors.Is(err, ErrNoPeer) {
		t.Errorf("LookupRegistered of nothing: %v, want ErrNoPeer", err)
	}
	// On the holder's node only: the agent's node name, in any case.
	self, err := client.Agent().NodeName()
	if err != nil {
		t.Fatal(err)
	}
	if addr, err := LookupRegisteredOn(ctx, client, "clmsd", 3, strings.ToUpper(self)); err != nil || addr != want {
		t.Errorf("LookupRegisteredOn(%s) = %q, %v, want %s", self, addr, err, want)
	}
	if _, err := LookupRegisteredOn(ctx, client, "clmsd", 3, "another-node"); !errors.Is(err, ErrNoPeer) {
		t.Errorf("LookupRegisteredOn another node: %v, want ErrNoPeer", err)
	}
	holders := map[int]string{3: strings.ToUpper(self)}
	if peers, err := PeersOn(ctx, client, "clmsd", func(n int) string { return holders[n] }); err != nil || !maps.Equal(peers, map[int]string{3: want}) {
		t.Errorf("PeersOn the holder = %v, %v, want node 3 at %s", peers, err, want)
	}
	holders[3] = "another-node"
	if peers, err := PeersOn(ctx, client, "clmsd", func(n int) string { return holders[n] }); err != nil || len(peers) != 0 {
		t.Errorf("PeersOn another node = %v, %v, want none", peers, err)
	}

	if err := dereg(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(ctx, client, "clmsd", 3); !errors.Is(err, ErrNoPeer) {
		t.Errorf("Lookup after deregister: %v, want ErrNoPeer", err)
	}
	if peers, err := Peers(ctx, client, "clmsd"); err != nil || len(peers) != 0 {
		t.Errorf("Peers after deregister = %v, %v", peers, err)
	}
}

func TestRegisterErrors(t *testing.T) {
	tests := []struct {
		name   string
		daemon string
		node   int
		port   int
	}{
		{"empty daemon", "", 1, 7101},
		{"node 0", "clmsd", 0, 7101},
		{"port 0", "clmsd", 1, 0},
		{"port too big", "clmsd", 1, 70000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Register(context.Background(), nil, tt.daemon, tt.node, "127.0.0.1", tt.port); err == nil {
				t.Fatal("Register accepted bad arguments")
			}
		})
	}
}
