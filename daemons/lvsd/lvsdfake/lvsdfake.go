// Package lvsdfake holds fakes of what lvsd's server drives, for tests:
// the VIPs (with a timeline shared by several nodes that records any
// overlap), the data plane (it forwards nothing, but picks through the
// served pickers on demand) and the watch of listening sockets (the test
// says what listens).
package lvsdfake

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/server"
)

// VIPs records what a director does to its interfaces, for tests:
// which VIPs are on which node, and every change with its time, so that
// a test can check that no two nodes ever held a VIP at once.
type VIPs struct {
	Node uint32
	TL   *VIPTimeline
	// Fail, when set, makes Add fail.
	Fail func() error

	mu        sync.Mutex
	held      map[netip.Prefix]string
	announced int
}

// VIPTimeline is the shared record of the VIPs fakes of several nodes.
type VIPTimeline struct {
	mu     sync.Mutex
	events []VIPEvent
	held   map[netip.Prefix][]uint32
	// Overlap is set when a node added a VIP another node held.
	Overlap []string
}

// VIPEvent is one Add or Remove.
type VIPEvent struct {
	At   time.Time
	Node uint32
	VIP  netip.Prefix
	Add  bool
}

// NewVIPTimeline returns an empty timeline.
func NewVIPTimeline() *VIPTimeline { return &VIPTimeline{held: map[netip.Prefix][]uint32{}} }

// Holders returns the nodes holding vip now.
func (tl *VIPTimeline) Holders(vip netip.Prefix) []uint32 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.held[vip])
}

// Overlaps returns the overlaps seen.
func (tl *VIPTimeline) Overlaps() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.Overlap)
}

// Events returns the changes in order.
func (tl *VIPTimeline) Events() []VIPEvent {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.events)
}

func (tl *VIPTimeline) record(node uint32, vip netip.Prefix, add bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.events = append(tl.events, VIPEvent{At: time.Now(), Node: node, VIP: vip, Add: add})
	h := tl.held[vip]
	if add {
		if len(h) > 0 {
			tl.Overlap = append(tl.Overlap, fmt.Sprintf("node %d added %s while %v held it", node, vip, h))
		}
		tl.held[vip] = append(h, node)
		return
	}
	tl.held[vip] = slices.DeleteFunc(h, func(n uint32) bool { return n == node })
}

// Add implements server.VIPs.
func (f *VIPs) Add(ifname string, vip netip.Prefix) error {
	if f.Fail != nil {
		if err := f.Fail(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = map[netip.Prefix]string{}
	}
	if _, ok := f.held[vip]; ok {
		return nil
	}
	f.held[vip] = ifname
	if f.TL != nil {
		f.TL.record(f.Node, vip, true)
	}
	return nil
}

// Remove implements server.VIPs.
func (f *VIPs) Remove(_ string, vip netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.held[vip]; !ok {
		return nil
	}
	delete(f.held, vip)
	if f.TL != nil {
		f.TL.record(f.Node, vip, false)
	}
	return nil
}

// Announce implements server.VIPs.
func (f *VIPs) Announce(string, netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced++
	return nil
}

// Held returns the VIPs on this node.
func (f *VIPs) Held() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	for p := range f.held {
		out = append(out, p)
	}
	return out
}

// Announced returns how many announcements were sent.
func (f *VIPs) Announced() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.announced
}

// Data is a data plane that forwards nothing, for tests: it records
// what is served and the backends dropped, and picks through the served
// pickers on demand.
type Data struct {
	mu      sync.Mutex
	serving map[netip.AddrPort]fakeServed
	dropped []netip.AddrPort
}

type fakeServed struct {
	o    lvsdspec.Options
	pick server.Picker
}

// Serve implements server.DataPlane.
func (f *Data) Serve(addr netip.AddrPort, o lvsdspec.Options, pick server.Picker) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.serving == nil {
		f.serving = map[netip.AddrPort]fakeServed{}
	}
	f.serving[addr] = fakeServed{o: o, pick: pick}
	return nil
}

// Stop implements server.DataPlane.
func (f *Data) Stop(addr netip.AddrPort, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.serving, addr)
	return nil
}

// DropBackend implements server.DataPlane.
func (f *Data) DropBackend(b netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = append(f.dropped, b)
}

// Serving returns the addresses served.
func (f *Data) Serving() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.AddrPort
	for a := range f.serving {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Dropped returns the backends dropped, in order.
func (f *Data) Dropped() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dropped)
}

// Pick picks a backend for client on addr as the proxy would; ok false
// when addr is not served or has no backend.
func (f *Data) Pick(addr, client netip.AddrPort) (netip.AddrPort, func(), bool) {
	f.mu.Lock()
	s, ok := f.serving[addr]
	f.mu.Unlock()
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	return s.pick.Pick(client)
}

// Listening is a WatchListening whose listening ports a test sets.
type Listening struct {
	mu      sync.Mutex
	on      map[lvsdspec.Port]bool
	changed func(map[lvsdspec.Port]bool)
}

// Watch is a server.WatchListening.
func (f *Listening) Watch(ctx context.Context, _ func() []lvsdspec.Options, _ time.Duration, changed func(map[lvsdspec.Port]bool)) error {
	f.mu.Lock()
	f.changed = changed
	cur := f.copyLocked()
	f.mu.Unlock()
	changed(cur)
	<-ctx.Done()
	return nil
}

// Set says whether this node listens on p.
func (f *Listening) Set(p lvsdspec.Port, on bool) {
	f.mu.Lock()
	if f.on == nil {
		f.on = map[lvsdspec.Port]bool{}
	}
	f.on[p] = on
	cur, changed := f.copyLocked(), f.changed
	f.mu.Unlock()
	if changed != nil {
		changed(cur)
	}
}

func (f *Listening) copyLocked() map[lvsdspec.Port]bool {
	out := map[lvsdspec.Port]bool{}
	for p, on := range f.on {
		out[p] = on
	}
	return out
}

var (
	_ server.VIPs      = (*VIPs)(nil)
	_ server.DataPlane = (*Data)(nil)
)
