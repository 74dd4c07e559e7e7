package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	cf "github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
)

var (
	vip4 = netip.MustParseAddr("10.77.0.100")
	vip6 = netip.MustParseAddr("2001:db8::100")
	n2   = netip.MustParseAddr("10.77.0.12")
	n3   = netip.MustParseAddr("10.77.0.13")
)

func svc4(proto cf.Protocol, port uint16) cf.Service {
	return cf.Service{Address: vip4, Netmask: netmask.MaskFrom(32, 32), Scheduler: "wlc", Port: port, Family: cf.INET, Protocol: proto}
}

func dst4(a netip.Addr, port uint16, fwd cf.ForwardType, w uint32) cf.Destination {
	return cf.Destination{Address: a, Port: port, Family: cf.INET, FwdMethod: fwd, Weight: w}
}

func TestTranslate(t *testing.T) {
	persistent := svc4(cf.TCP, 443)
	persistent.Flags, persistent.Timeout = cf.ServicePersistent, 2
	for _, tc := range []struct {
		name string
		in   []VirtualService
		want []Entry
		err  string
	}{
		{
			name: "direct routing, backends sorted, weights kept",
			in: []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Backends: []Backend{
				{Addr: n3, Weight: 5}, {Addr: n2, Weight: 10},
			}}},
			want: []Entry{{Service: svc4(cf.TCP, 80), Destinations: []cf.Destination{
				dst4(n2, 80, cf.DirectRoute, 10), dst4(n3, 80, cf.DirectRoute, 5),
			}}},
		},
		{
			name: "NAT may remap the port; weight clamped",
			in: []VirtualService{{VIP: vip4, Proto: "udp", Port: 53, Method: NAT, Backends: []Backend{
				{Addr: n2, Port: 5353, Weight: 1 << 20},
			}}},
			want: []Entry{{Service: svc4(cf.UDP, 53), Destinations: []cf.Destination{dst4(n2, 5353, cf.Masquerade, MaxWeight)}}},
		},
		{
			name: "affinity is persistence in whole seconds, rounded up",
			in:   []VirtualService{{VIP: vip4, Proto: "tcp", Port: 443, Affinity: 1500 * time.Millisecond}},
			want: []Entry{{Service: persistent}},
		},
		{
			name: "IPv6",
			in:   []VirtualService{{VIP: vip6, Proto: "tcp", Port: 80, Backends: []Backend{{Addr: netip.MustParseAddr("2001:db8::12"), Weight: 1}}}},
			want: []Entry{{
				Service:      cf.Service{Address: vip6, Netmask: netmask.MaskFrom(128, 128), Scheduler: "wlc", Port: 80, Family: cf.INET6, Protocol: cf.TCP},
				Destinations: []cf.Destination{{Address: netip.MustParseAddr("2001:db8::12"), Port: 80, Family: cf.INET6, FwdMethod: cf.DirectRoute, Weight: 1}},
			}},
		},
		{
			name: "4in6 addresses are unmapped",
			in:   []VirtualService{{VIP: netip.AddrFrom16(vip4.As16()), Proto: "tcp", Port: 80, Backends: []Backend{{Addr: netip.AddrFrom16(n2.As16()), Weight: 1}}}},
			want: []Entry{{Service: svc4(cf.TCP, 80), Destinations: []cf.Destination{dst4(n2, 80, cf.DirectRoute, 1)}}},
		},
		{name: "sctp", in: []VirtualService{{VIP: vip4, Proto: "sctp", Port: 80}}, err: `protocol "sctp" is neither tcp nor udp`},
		{name: "no port", in: []VirtualService{{VIP: vip4, Proto: "tcp"}}, err: "needs an address and a port"},
		{name: "no VIP", in: []VirtualService{{Proto: "tcp", Port: 80}}, err: "needs an address and a port"},
		{name: "unknown method", in: []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Method: 7}}, err: "unknown forwarding method Method(7)"},
		{
			name: "mixed families",
			in:   []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Backends: []Backend{{Addr: netip.MustParseAddr("2001:db8::12")}}}},
			err:  "backend 2001:db8::12 is not of the VIP's family",
		},
		{
			name: "direct routing cannot remap",
			in:   []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Backends: []Backend{{Addr: n2, Port: 8080}}}},
			err:  "direct routing cannot change the port",
		},
		{
			name: "a backend twice",
			in:   []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Backends: []Backend{{Addr: n2}, {Addr: n2, Port: 80}}}},
			err:  "backend 10.77.0.12:80 listed twice",
		},
		{name: "a backend without address", in: []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Backends: []Backend{{}}}}, err: "a backend without an address"},
		{
			name: "a service twice",
			in:   []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80}, {VIP: vip4, Proto: "tcp", Port: 80, Method: NAT}},
			err:  "tcp/10.77.0.100:80: listed twice",
		},
		{
			name: "same port, two protocols",
			in:   []VirtualService{{VIP: vip4, Proto: "tcp", Port: 53}, {VIP: vip4, Proto: "udp", Port: 53}},
			want: []Entry{{Service: svc4(cf.TCP, 53)}, {Service: svc4(cf.UDP, 53)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Translate(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Count(err.Error(), "ipvs: ") != 1 {
					t.Fatalf("Translate: %v, want an error with %q (prefix once)", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			if Describe(got) != Describe(tc.want) || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Translate:\n%s%v\nwant\n%s%v", Describe(got), got, Describe(tc.want), tc.want)
			}
		})
	}
}

func ops(os []Op) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.String())
	}
	return out
}

func TestPlan(t *testing.T) {
	web := svc4(cf.TCP, 80)
	dns := svc4(cf.UDP, 53)
	hashed := web
	hashed.Flags = cf.ServiceHashed // as the kernel reports it
	other := cf.Service{Address: netip.MustParseAddr("10.96.0.1"), Netmask: netmask.MaskFrom(32, 32), Scheduler: "rr", Port: 443, Family: cf.INET, Protocol: cf.TCP}
	sticky := web
	sticky.Flags, sticky.Timeout = cf.ServicePersistent, 300
	vips := []netip.Addr{vip4}
	for _, tc := range []struct {
		name          string
		current, want []Entry
		ops           []string
	}{
		{name: "nothing to do", ops: nil},
		{
			name: "a new service with its destinations",
			want: []Entry{{Service: web, Destinations: []cf.Destination{dst4(n2, 80, cf.DirectRoute, 1)}}},
			ops:  []string{"create-service TCP/10.77.0.100:80", "create-destination TCP/10.77.0.100:80 -> 10.77.0.12:80 DirectRoute w1"},
		},
		{
			name:    "in step (the kernel's hashed flag is not a difference)",
			current: []Entry{{Service: hashed, Destinations: []cf.Destination{dst4(n2, 80, cf.DirectRoute, 1)}}},
			want:    []Entry{{Service: web, Destinations: []cf.Destination{dst4(n2, 80, cf.DirectRoute, 1)}}},
		},
		{
			name:    "a backend joins, one leaves, one changes weight: removal first",
			current: []Entry{{Service: web, Destinations: []cf.Destination{dst4(n2, 80, cf.DirectRoute, 1), dst4(n3, 80, cf.DirectRoute, 1)}}},
			want:    []Entry{{Service: web, Destinations: []cf.Destination{dst4(n3, 80, cf.DirectRoute, 4), dst4(netip.MustParseAddr("10.77.0.14"), 80, cf.DirectRoute, 1)}}},
			ops: []string{
				"remove-destination TCP/10.77.0.100:80 -> 10.77.0.12:80 DirectRoute w1",
				"update-destination TCP/10.77.0.100:80 -> 10.77.0.13:80 DirectRoute w4",
				"create-destination TCP/10.77.0.100:80 -> 10.77.0.14:80 DirectRoute w1",
			},
		},
		{
			name:    "affinity switched on",
			current: []Entry{{Service: web}},
			want:    []Entry{{Service: sticky}},
			ops:     []string{"update-service TCP/10.77.0.100:80"},
		},
		{
			name:    "a port deregistered goes with its destinations; others' services stay",
			current: []Entry{{Service: other}, {Service: dns, Destinations: []cf.Destination{dst4(n2, 53, cf.DirectRoute, 1)}}, {Service: web}},
			want:    []Entry{{Service: web}},
			ops:     []string{"remove-service UDP/10.77.0.100:53"},
		},
		{
			name:    "no VIP any more: all of ours go, in a stable order",
			current: []Entry{{Service: web}, {Service: other}, {Service: dns}},
			ops:     []string{"remove-service TCP/10.77.0.100:80", "remove-service UDP/10.77.0.100:53"},
		},
		{
			name:    "method changed",
			current: []Entry{{Service: web, Destinations: []cf.Destination{dst4(n2, 80, cf.DirectRoute, 1)}}},
			want:    []Entry{{Service: web, Destinations: []cf.Destination{dst4(n2, 80, cf.Masquerade, 1)}}},
			ops:     []string{"update-destination TCP/10.77.0.100:80 -> 10.77.0.12:80 Masquerade w1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ops(Plan(vips, tc.current, tc.want))
			if !slices.Equal(got, tc.ops) {
				t.Fatalf("Plan:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.ops, "\n"))
			}
		})
	}
}

// fake is an in-memory IPVS table behind cf.Client, keeping services in
// insertion order as the kernel lists them, and failing one operation on
// request.
type fake struct {
	cf.Client // unused methods panic
	entries   []Entry
	failOn    OpKind
	fail      bool
	calls     int
}

func (f *fake) find(s cf.Service) int {
	return slices.IndexFunc(f.entries, func(e Entry) bool { return keyOf(e.Service) == keyOf(s) })
}

func (f *fake) check(k OpKind) error {
	f.calls++
	if f.fail && k == f.failOn {
		return errors.New("no such file or directory")
	}
	return nil
}

func (f *fake) Services() ([]cf.ServiceExtended, error) {
	var out []cf.ServiceExtended
	for _, e := range f.entries {
		s := e.Service
		s.Flags |= cf.ServiceHashed
		out = append(out, cf.ServiceExtended{Service: s})
	}
	return out, nil
}

func (f *fake) Destinations(s cf.Service) ([]cf.DestinationExtended, error) {
	i := f.find(s)
	if i < 0 {
		return nil, errors.New("no such service")
	}
	var out []cf.DestinationExtended
	for _, d := range f.entries[i].Destinations {
		out = append(out, cf.DestinationExtended{Destination: d, ActiveConnections: 3})
	}
	return out, nil
}

func (f *fake) CreateService(s cf.Service) error {
	if err := f.check(CreateService); err != nil {
		return err
	}
	f.entries = append(f.entries, Entry{Service: s})
	return nil
}

func (f *fake) UpdateService(s cf.Service) error {
	if err := f.check(UpdateService); err != nil {
		return err
	}
	f.entries[f.find(s)].Service = s
	return nil
}

func (f *fake) RemoveService(s cf.Service) error {
	if err := f.check(RemoveService); err != nil {
		return err
	}
	f.entries = slices.Delete(f.entries, f.find(s), f.find(s)+1)
	return nil
}

func (f *fake) destIndex(e Entry, d cf.Destination) int {
	return slices.IndexFunc(e.Destinations, func(x cf.Destination) bool { return x.Address == d.Address && x.Port == d.Port })
}

func (f *fake) CreateDestination(s cf.Service, d cf.Destination) error {
	if err := f.check(CreateDestination); err != nil {
		return err
	}
	e := &f.entries[f.find(s)]
	e.Destinations = append(e.Destinations, d)
	return nil
}

func (f *fake) UpdateDestination(s cf.Service, d cf.Destination) error {
	if err := f.check(UpdateDestination); err != nil {
		return err
	}
	e := &f.entries[f.find(s)]
	e.Destinations[f.destIndex(*e, d)] = d
	return nil
}

func (f *fake) RemoveDestination(s cf.Service, d cf.Destination) error {
	if err := f.check(RemoveDestination); err != nil {
		return err
	}
	e := &f.entries[f.find(s)]
	i := f.destIndex(*e, d)
	e.Destinations = slices.Delete(e.Destinations, i, i+1)
	return nil
}

func TestSync(t *testing.T) {
	other := cf.Service{Address: netip.MustParseAddr("10.96.0.1"), Netmask: netmask.MaskFrom(32, 32), Scheduler: "rr", Port: 443, Family: cf.INET, Protocol: cf.TCP}
	f := &fake{entries: []Entry{{Service: other}, {Service: svc4(cf.UDP, 53), Destinations: []cf.Destination{dst4(n3, 53, cf.DirectRoute, 1)}}}}
	vss := []VirtualService{{VIP: vip4, Proto: "tcp", Port: 80, Backends: []Backend{{Addr: n2, Weight: 2}, {Addr: n3, Weight: 1}}}}
	want, err := Translate(vss)
	if err != nil {
		t.Fatal(err)
	}
	if err := Sync(f, []netip.Addr{vip4}, want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	wantDesc := "TCP 10.96.0.1:443 rr\nTCP 10.77.0.100:80 wlc -> 10.77.0.12:80 DirectRoute w2 -> 10.77.0.13:80 DirectRoute w1\n"
	if Describe(got) != wantDesc {
		t.Fatalf("after Sync:\n%swant\n%s", Describe(got), wantDesc)
	}
	calls := f.calls
	if err := Sync(f, []netip.Addr{vip4}, want); err != nil || f.calls != calls {
		t.Fatalf("a second Sync: %v, %d more calls, want none", err, f.calls-calls)
	}

	// A failing step stops the sync with the step named; the next one
	// starts from what the kernel then has.
	vss[0].Backends = append(vss[0].Backends, Backend{Addr: netip.MustParseAddr("10.77.0.14"), Weight: 1})
	want, _ = Translate(vss)
	f.fail, f.failOn = true, CreateDestination
	err = Sync(f, []netip.Addr{vip4}, want)
	if err == nil || err.Error() != "ipvs: create-destination TCP/10.77.0.100:80 -> 10.77.0.14:80 DirectRoute w1: no such file or directory" {
		t.Fatalf("Sync with a failing kernel: %v", err)
	}
	f.fail = false
	if err := Sync(f, []netip.Addr{vip4}, want); err != nil {
		t.Fatalf("Sync again: %v", err)
	}
	got, _ = Read(f)
	if !strings.Contains(Describe(got), "-> 10.77.0.14:80 DirectRoute w1") {
		t.Fatalf("after the retry:\n%s", Describe(got))
	}
}

// TestAvailable runs the detection on this kernel. Most CI kernels and
// containers have no IPVS; either answer is fine, an error is not, unless
// netlink itself is refused here.
func TestAvailable(t *testing.T) {
	ok, err := Available()
	if err != nil {
		t.Skipf("no answer on this machine: %v", err)
	}
	t.Logf("IPVS available: %v", ok)
}
