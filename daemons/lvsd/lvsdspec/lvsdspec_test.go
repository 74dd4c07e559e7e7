package lvsdspec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// fakeUsers makes LookupUser know root and www-data (uid 33) only.
func fakeUsers(t *testing.T) {
	old := LookupUser
	LookupUser = func(name string) (uint32, bool) {
		uid, ok := map[string]uint32{"root": 0, "www-data": 33}[name]
		return uid, ok
	}
	t.Cleanup(func() { LookupUser = old })
}

func TestValidate(t *testing.T) {
	fakeUsers(t)
	vip := func(addr, ifname string) func(*Config) {
		return func(c *Config) { c.VIPs = append(c.VIPs, VIP{Address: addr, Interface: ifname}) }
	}
	port := func(pc PortConfig) func(*Config) {
		return func(c *Config) { c.Ports = append(c.Ports, pc) }
	}
	for _, tc := range []struct {
		name string
		mods []func(*Config)
		key  string // the key the error names; "" when valid
	}{
		{"default", nil, ""},
		{"one vip", []func(*Config){vip("192.168.10.100/24", "eth0")}, ""},
		{"ipv6 vip", []func(*Config){vip("fd00::100/64", "host0")}, ""},
		{"vip without prefix", []func(*Config){vip("192.168.10.100", "eth0")}, "lvsd.vips[0].address"},
		{"vip not an address", []func(*Config){vip("example.com/24", "eth0")}, "lvsd.vips[0].address"},
		{"vip loopback", []func(*Config){vip("127.0.0.2/8", "lo")}, "lvsd.vips[0].address"},
		{"vip multicast", []func(*Config){vip("224.0.0.1/4", "eth0")}, "lvsd.vips[0].address"},
		{"vip twice", []func(*Config){vip("10.0.0.1/24", "eth0"), vip("10.0.0.1/16", "eth1")}, "lvsd.vips[1].address"},
		{"no interface", []func(*Config){vip("10.0.0.1/24", "")}, "lvsd.vips[0].interface"},
		{"interface too long", []func(*Config){vip("10.0.0.1/24", "abcdefghijklmnop")}, "lvsd.vips[0].interface"},
		{"interface with slash", []func(*Config){vip("10.0.0.1/24", "eth/0")}, "lvsd.vips[0].interface"},
		{"ports", []func(*Config){port(PortConfig{Port: "tcp/80"}), port(PortConfig{Port: "udp/53"}),
			port(PortConfig{Port: "tcp/443", ProxyProtocol: true, Scheduler: "wlc", Affinity: "source", AffinityTimeout: time.Minute})}, ""},
		{"port without protocol", []func(*Config){port(PortConfig{Port: "80"})}, "lvsd.ports[0].port"},
		{"port sctp", []func(*Config){port(PortConfig{Port: "sctp/80"})}, "lvsd.ports[0].port"},
		{"port zero", []func(*Config){port(PortConfig{Port: "tcp/0"})}, "lvsd.ports[0].port"},
		{"port too big", []func(*Config){port(PortConfig{Port: "tcp/65536"})}, "lvsd.ports[0].port"},
		{"port leading zero", []func(*Config){port(PortConfig{Port: "tcp/080"})}, "lvsd.ports[0].port"},
		{"port twice", []func(*Config){port(PortConfig{Port: "tcp/80"}), port(PortConfig{Port: "tcp/80"})}, "lvsd.ports[1].port"},
		{"port with two protocols", []func(*Config){port(PortConfig{Port: "tcp/53"}), port(PortConfig{Port: "udp/53"})}, "lvsd.ports[1].port"},
		{"scheduler rr", []func(*Config){port(PortConfig{Port: "tcp/80", Scheduler: "rr"})}, "lvsd.ports[0].scheduler"},
		{"affinity dest", []func(*Config){port(PortConfig{Port: "tcp/80", Affinity: "dest"})}, "lvsd.ports[0].affinity"},
		{"affinity timeout alone", []func(*Config){port(PortConfig{Port: "tcp/80", AffinityTimeout: time.Minute})}, "lvsd.ports[0].affinity_timeout"},
		{"affinity timeout short", []func(*Config){port(PortConfig{Port: "tcp/80", Affinity: "source", AffinityTimeout: time.Millisecond})}, "lvsd.ports[0].affinity_timeout"},
		{"proxy protocol on udp", []func(*Config){port(PortConfig{Port: "udp/53", ProxyProtocol: true})}, "lvsd.ports[0].proxy_protocol"},
		{"proxy protocol with ipvs", []func(*Config){func(c *Config) { c.Forwarding = ForwardIPVSDR }, port(PortConfig{Port: "tcp/80", ProxyProtocol: true})}, "lvsd.ports[0].proxy_protocol"},
		{"users", []func(*Config){port(PortConfig{Port: "tcp/8080", Users: []string{"www-data", "1000", "0", "root"}})}, ""},
		{"user unknown here", []func(*Config){port(PortConfig{Port: "tcp/80"}), port(PortConfig{Port: "tcp/8080", Users: []string{"www-data", "no-such-user"}})}, "lvsd.ports[1].users"},
		{"user not a name", []func(*Config){port(PortConfig{Port: "tcp/8080", Users: []string{"a b"}})}, "lvsd.ports[0].users"},
		{"uid -1", []func(*Config){port(PortConfig{Port: "tcp/8080", Users: []string{"4294967295"}})}, "lvsd.ports[0].users"},
		{"too many users", []func(*Config){port(PortConfig{Port: "tcp/8080", Users: make([]string, MaxUsers+1)})}, "lvsd.ports[0].users"},
		{"forwarding", []func(*Config){func(c *Config) { c.Forwarding = "dsr" }}, "lvsd.forwarding"},
		{"stop timeout short", []func(*Config){func(c *Config) { c.StopTimeout = 50 * time.Millisecond }}, "lvsd.stop_timeout"},
		{"watch every long", []func(*Config){func(c *Config) { c.WatchEvery = 2 * time.Second }}, "lvsd.watch_every"},
	} {
		c := Default()
		for _, m := range tc.mods {
			m(&c)
		}
		err := c.Validate()
		var se *settings.Error
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		case tc.key != "" && (!errors.As(err, &se) || !errors.Is(err, settings.ErrInvalid)):
			t.Errorf("%s: Validate() = %v, want a *settings.Error for %s", tc.name, err, tc.key)
		case tc.key != "" && se.Key != tc.key:
			t.Errorf("%s: Validate() names %s (%v), want %s", tc.name, se.Key, err, tc.key)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error is not one line: %q", tc.name, err)
		}
	}
}

func TestParsePort(t *testing.T) {
	p, err := ParsePort("tcp/80")
	if err != nil || p != (Port{Proto: "tcp", Num: 80}) || p.String() != "tcp/80" || p.Service() != "openssi-lvs-tcp-80" || p.Key() != "tcp-80" {
		t.Fatalf("ParsePort(tcp/80) = %+v, %v", p, err)
	}
	if q, ok := PortFromService(p.Service()); !ok || q != p {
		t.Errorf("PortFromService(%s) = %+v, %v", p.Service(), q, ok)
	}
	for _, s := range []string{"openssi-lvs-", "openssi-lvs-tcp", "openssi-lvs-tcp-0", "openssi-dlmd", "openssi-lvs-x-80"} {
		if _, ok := PortFromService(s); ok {
			t.Errorf("PortFromService(%q) accepted", s)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := PortConfig{Port: "tcp/80", Affinity: "source"}.Options()
	if err != nil || !o.Affinity || o.AffinityTimeout != DefaultAffinityTimeout {
		t.Errorf("Options() = %+v, %v", o, err)
	}
	o, err = PortConfig{Port: "udp/53"}.Options()
	if err != nil || o.Affinity || o.AffinityTimeout != 0 || o.Port.Proto != "udp" {
		t.Errorf("Options() = %+v, %v", o, err)
	}
}

// TestOptionsUsers: users resolve to uids once each; a name unknown on
// this node is an error for Options and left out by OptionsKnownUsers.
func TestOptionsUsers(t *testing.T) {
	fakeUsers(t)
	o, err := PortConfig{Port: "tcp/8080", Users: []string{"www-data", " 1000", "33"}}.Options()
	if err != nil || !reflect.DeepEqual(o.Users, []string{"www-data", "1000", "33"}) || !reflect.DeepEqual(o.UIDs, []uint32{33, 1000}) {
		t.Errorf("Options() = %+v, %v", o, err)
	}
	pc := PortConfig{Port: "tcp/8080", Users: []string{"nobody-here", "www-data"}}
	if _, err := pc.Options(); err == nil {
		t.Error("Options() accepted a user unknown here")
	}
	o, unknown, err := pc.OptionsKnownUsers()
	if err != nil || !reflect.DeepEqual(o.UIDs, []uint32{33}) || !reflect.DeepEqual(unknown, []string{"nobody-here"}) ||
		!reflect.DeepEqual(o.Users, pc.Users) {
		t.Errorf("OptionsKnownUsers() = %+v, %v, %v", o, unknown, err)
	}
	if !o.Equal(o) || o.Equal(Options{Port: o.Port}) || !o.SameForwarding(Options{Port: o.Port}) {
		t.Error("Equal")
	}
}

// TestLoad: the section as openssi.yaml writes it, lists of mappings
// included, loads through the configuration loader; a misspelt key inside
// an entry and a bad entry each stop it with one line naming the key.
func TestLoad(t *testing.T) {
	fakeUsers(t)
	load := func(text string) (Config, error) {
		path := filepath.Join(t.TempDir(), "openssi.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(config.LoadOptions{Path: path, Sections: []config.Section{Daemon.Config}})
		if err != nil {
			return Config{}, err
		}
		return From(c), nil
	}
	c, err := load(`lvsd:
  vips:
    - address: 10.0.0.100/24
      interface: eth0
  ports:
    - port: tcp/80
    - port: tcp/443
      proxy_protocol: true
      affinity: source
      affinity_timeout: 2m
      users: [www-data, 1000]
  stop_timeout: 1s
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.VIPs) != 1 || c.VIPs[0] != (VIP{Address: "10.0.0.100/24", Interface: "eth0"}) || len(c.Ports) != 2 ||
		!reflect.DeepEqual(c.Ports[1], PortConfig{Port: "tcp/443", ProxyProtocol: true, Affinity: "source", AffinityTimeout: 2 * time.Minute, Users: []string{"www-data", "1000"}}) ||
		c.StopTimeout != time.Second || c.WatchEvery != Default().WatchEvery {
		t.Errorf("loaded %+v", c)
	}
	for _, tc := range []struct{ text, want string }{
		{"lvsd:\n  ports:\n    - port: tcp/80\n      proxy: true\n", "proxy"},
		{"lvsd:\n  ports:\n    - port: tcp/80\n    - port: udp/80\n", "lvsd.ports[1].port"},
		{"lvsd:\n  vips:\n    - address: 10.0.0.1\n      interface: eth0\n", "lvsd.vips[0].address"},
		{"lvsd:\n  ports:\n    - port: tcp/80\n      users: [no-such-user]\n", "lvsd.ports[0].users"},
	} {
		_, err := load(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: Load() = %v, want one line naming %s", tc.text, err, tc.want)
		}
	}
}

// TestRoot: the director's lock is in a root-only lockspace, so the
// daemon runs as root, with the network capabilities it needs.
func TestRoot(t *testing.T) {
	if Daemon.Hardening.User != "" || !strings.HasPrefix(Lockspace, "openssi.") {
		t.Errorf("runs as %q with lockspace %q", Daemon.Hardening.User, Lockspace)
	}
	if Daemon.Binary != "openssi-lvsd" || Daemon.Unit != "openssi-lvsd.service" {
		t.Errorf("binary %q, unit %q", Daemon.Binary, Daemon.Unit)
	}
}

// TestExampleIsDefault: the shipped section loads to the defaults.
func TestExampleIsDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "openssi.yaml")
	if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(config.LoadOptions{Path: path, Sections: []config.Section{Daemon.Config}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := From(c), Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("example loads to %+v, want %+v", got, want)
	}
}

// TestReleaseOnStop: the unit removes the VIPs however the daemon ended,
// with the daemon's own binary.
func TestReleaseOnStop(t *testing.T) {
	want := describe.Directive{Key: "ExecStopPost", Value: "-/usr/sbin/" + Daemon.Binary + " " + ReleaseFlag}
	for _, d := range Daemon.Hardening.Set {
		if d == want {
			return
		}
	}
	t.Errorf("no %v in %v", want, Daemon.Hardening.Set)
}
