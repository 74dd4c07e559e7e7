// Package vip holds lvsd's cluster address on the director: it checks that
// the configured VIP fits the interface it is given (Check), adds and
// removes it with netlink (Add, Remove; both idempotent, so a director that
// restarts or loses the election twice does no harm), and announces its
// move to the link (Announce: a gratuitous ARP for IPv4, an unsolicited
// neighbour advertisement for IPv6), so that clients and routers whose
// neighbour tables still name the old director's MAC switch at once
// instead of after their entries go stale.
//
// Every function works in the network namespace of the calling thread, as
// netlink and packet sockets do.
package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Check returns an error naming the problem when ifname does not exist or
// vip's address is inside none of the subnets of ifname's addresses of
// its family: then a *CheckError saying which of the two is wrong.
func Check(ifname string, vip netip.Prefix) error {
	link, err := linkByName(ifname)
	if err != nil {
		if errors.As(err, new(noInterface)) {
			return &CheckError{Field: "interface", Err: err}
		}
		return err
	}
	subnets, err := subnetsOf(link, vip.Addr())
	if err != nil {
		return err
	}
	if err := fits(ifname, vip, subnets); err != nil {
		return &CheckError{Field: "address", Err: err}
	}
	return nil
}

// CheckError is Check's answer when the VIP's entry is wrong, not the
// kernel: Field is "interface" (it does not exist) or "address" (the VIP
// does not fit the interface's subnets).
type CheckError struct {
	Field string
	Err   error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// fits is Check's decision, apart from the kernel: vip must be a valid
// host address (not a masked network, a multicast or loopback address)
// inside one of subnets, and not the network or broadcast address of the
// IPv4 subnet it falls in.
func fits(ifname string, vip netip.Prefix, subnets []netip.Prefix) error {
	if !vip.IsValid() {
		return fmt.Errorf("vip: %v is not an address/prefix", vip)
	}
	a := vip.Addr()
	if a.Is4In6() {
		return fmt.Errorf("vip: %v: write the IPv4 address as such", vip)
	}
	if a.Zone() != "" {
		return fmt.Errorf("vip: %v: a zone is not allowed", vip)
	}
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() {
		return fmt.Errorf("vip: %v is not a unicast address a client can reach", vip)
	}
	var same []netip.Prefix
	for _, s := range subnets {
		if s.Addr().Is4() == a.Is4() {
			same = append(same, s)
		}
	}
	for _, s := range same {
		if !s.Contains(a) {
			continue
		}
		if a.Is4() && s.Bits() < 31 {
			m := s.Masked()
			if a == m.Addr() {
				return fmt.Errorf("vip: %v is the network address of %v on %s", a, m, ifname)
			}
			if a == lastAddr(m) {
				return fmt.Errorf("vip: %v is the broadcast address of %v on %s", a, m, ifname)
			}
		}
		return nil
	}
	if len(same) == 0 {
		return fmt.Errorf("vip: %s has no %s address, so %v is in none of its subnets", ifname, family(a), a)
	}
	return fmt.Errorf("vip: %v is not inside a subnet of %s (%v)", a, ifname, same)
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// lastAddr is the highest address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		host := p.Bits() - i*8
		switch {
		case host <= 0:
			b[i] = 0xff
		case host < 8:
			b[i] |= 0xff >> host
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Add puts vip on ifname. An address already there is no error. IPv6
// addresses skip duplicate address detection, so the VIP answers at once
// after a takeover (the election, not DAD, keeps it unique).
func Add(ifname string, vip netip.Prefix) error {
	link, err := linkByName(ifname)
	if err != nil {
		return err
	}
	addr := toNetlink(vip)
	if vip.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("vip: add %v to %s: %w", vip, ifname, err)
	}
	return nil
}

// Remove takes vip off ifname. An address that is not there is no error.
func Remove(ifname string, vip netip.Prefix) error {
	link, err := linkByName(ifname)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(link, toNetlink(vip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("vip: remove %v from %s: %w", vip, ifname, err)
	}
	return nil
}

// Has reports whether vip's address is on ifname.
func Has(ifname string, vip netip.Addr) (bool, error) {
	link, err := linkByName(ifname)
	if err != nil {
		return false, err
	}
	addrs, err := netlink.AddrList(link, netlinkFamily(vip))
	if err != nil {
		return false, fmt.Errorf("vip: addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a); ok && p.Addr() == vip.Unmap() {
			return true, nil
		}
	}
	return false, nil
}

// Announce tells ifname's link that addr is now at ifname's MAC: for IPv4 a
// gratuitous ARP request and a gratuitous ARP reply (some hosts heed only
// one of the two), both broadcast; for IPv6 an unsolicited neighbour
// advertisement with the override flag to all nodes. Neighbours that have
// an entry for addr update it; the caller repeats Announce if it wants to
// cover a lost frame. IPv6 sends from ifname's link-local address, which
// must exist and have passed duplicate address detection.
func Announce(ifname string, addr netip.Addr) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("vip: interface %q: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("vip: %s has no Ethernet address to announce %v with", ifname, addr)
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return announce4(ifi, addr)
	}
	return announce6(ifi, addr)
}

func announce4(ifi *net.Interface, addr netip.Addr) error {
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("vip: ARP socket on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	for _, p := range gratuitousARP(ifi.HardwareAddr, addr) {
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("vip: gratuitous ARP for %v on %s: %w", addr, ifi.Name, err)
		}
	}
	return nil
}

// gratuitousARP are the frames announce4 sends: a request and a reply in
// which the sender and target address are both addr (RFC 5227 section 3),
// the target MAC zero in the request and the broadcast address in the
// reply, as Linux's arping -U and -A send them.
func gratuitousARP(mac net.HardwareAddr, addr netip.Addr) []*arp.Packet {
	req, _ := arp.NewPacket(arp.OperationRequest, mac, addr, make(net.HardwareAddr, len(mac)), addr)
	rep, _ := arp.NewPacket(arp.OperationReply, mac, addr, ethernet.Broadcast, addr)
	return []*arp.Packet{req, rep}
}

func announce6(ifi *net.Interface, addr netip.Addr) error {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("vip: ICMPv6 socket on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	if err := c.WriteTo(unsolicitedNA(ifi.HardwareAddr, addr), nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("vip: neighbour advertisement for %v on %s: %w", addr, ifi.Name, err)
	}
	return nil
}

// unsolicitedNA is the advertisement announce6 sends (RFC 4861 section
// 7.2.6): not solicited, override set, and the target's link-layer
// address, so neighbours replace the MAC they have for addr.
func unsolicitedNA(mac net.HardwareAddr, addr netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
}

func linkByName(ifname string) (netlink.Link, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, noInterface{name: ifname}
		}
		return nil, fmt.Errorf("vip: interface %q: %w", ifname, err)
	}
	return link, nil
}

// noInterface: the interface does not exist.
type noInterface struct{ name string }

func (e noInterface) Error() string { return fmt.Sprintf("vip: interface %q does not exist", e.name) }

// subnetsOf lists the prefixes of link's addresses of a's family.
func subnetsOf(link netlink.Link, a netip.Addr) ([]netip.Prefix, error) {
	addrs, err := netlink.AddrList(link, netlinkFamily(a))
	if err != nil {
		return nil, fmt.Errorf("vip: addresses of %s: %w", link.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, ad := range addrs {
		if p, ok := prefixOf(ad); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func netlinkFamily(a netip.Addr) int {
	if a.Unmap().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

func toNetlink(vip netip.Prefix) *netlink.Addr {
	a := vip.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(vip.Bits(), bits)}}
}
