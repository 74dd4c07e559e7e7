package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/arp"
)

// The host is a client of the lab like any machine on the nodes' link: it
// holds the bridge's address (HostAddr), so it reaches a cluster address
// (lvsd's VIP) directly, resolves it with ARP and keeps what it learned in
// its neighbour table, which the functions below read and probe.

// HostAddr is the host's address on the lab bridge.
func (l *Lab) HostAddr() (netip.Addr, error) {
	s := l.State()
	if s == nil {
		return netip.Addr{}, ErrNoLab
	}
	a, err := netip.ParseAddr(s.Subnet + ".1")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lab: subnet %q: %w", s.Subnet, err)
	}
	return a, nil
}

// Neighbor is one entry of the host's neighbour table on the bridge.
type Neighbor struct {
	MAC   string   // "" while unresolved (INCOMPLETE, FAILED)
	State []string // e.g. ["REACHABLE"], ["STALE"]
}

// HostNeighbor returns the host's entry for addr on the lab bridge, and
// false when it has none.
func (l *Lab) HostNeighbor(addr netip.Addr) (Neighbor, bool, error) {
	s := l.State()
	if s == nil {
		return Neighbor{}, false, ErrNoLab
	}
	out, err := exec.Command("ip", "-j", "neigh", "show", "to", addr.String(), "dev", s.Bridge).Output()
	if err != nil {
		return Neighbor{}, false, fmt.Errorf("lab: ip neigh show %v: %w", addr, err)
	}
	return parseNeigh(out, addr)
}

// parseNeigh picks addr's entry out of `ip -j neigh show`.
func parseNeigh(js []byte, addr netip.Addr) (Neighbor, bool, error) {
	var entries []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if len(strings.TrimSpace(string(js))) == 0 {
		return Neighbor{}, false, nil
	}
	if err := json.Unmarshal(js, &entries); err != nil {
		return Neighbor{}, false, fmt.Errorf("lab: ip neigh: %w", err)
	}
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Dst); err == nil && a == addr {
			return Neighbor{MAC: strings.ToLower(e.LLAddr), State: e.State}, true, nil
		}
	}
	return Neighbor{}, false, nil
}

// FlushHostNeighbor drops the host's entry for addr, so the next packet to
// it resolves afresh.
func (l *Lab) FlushHostNeighbor(addr netip.Addr) error {
	s := l.State()
	if s == nil {
		return ErrNoLab
	}
	out, err := exec.Command("ip", "neigh", "flush", "to", addr.String(), "dev", s.Bridge).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip neigh flush %v: %v: %s", addr, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NodeIface is the name of a node's link to the bridge inside the node
// (systemd-nspawn --network-bridge names it so).
const NodeIface = "host0"

// NodeMAC returns the MAC of a running node's link to the bridge, as the
// host's neighbour table and WhoHas show it.
func (l *Lab) NodeMAC(ctx context.Context, node string) (string, error) {
	out, err := l.Exec(ctx, node, "cat", "/sys/class/net/"+NodeIface+"/address")
	if err != nil {
		return "", err
	}
	mac, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		return "", fmt.Errorf("lab: %s's MAC: %w", node, err)
	}
	return mac.String(), nil
}

// WhoHas asks the bridge for addr with one broadcast ARP request from the
// host and returns the MACs of every node that answered within wait,
// sorted and each once: more than one means two nodes claim the address.
func (l *Lab) WhoHas(addr netip.Addr, wait time.Duration) ([]string, error) {
	s := l.State()
	if s == nil {
		return nil, ErrNoLab
	}
	if !addr.Is4() {
		return nil, fmt.Errorf("lab: WhoHas %v: ARP is IPv4 only", addr)
	}
	ifi, err := net.InterfaceByName(s.Bridge)
	if err != nil {
		return nil, fmt.Errorf("lab: bridge: %w", err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("lab: ARP socket on %s: %w", s.Bridge, err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := c.Request(addr); err != nil {
		return nil, fmt.Errorf("lab: ARP request for %v: %w", addr, err)
	}
	var macs []string
	for {
		p, _, err := c.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return nil, fmt.Errorf("lab: read ARP on %s: %w", s.Bridge, err)
		}
		if p.Operation == arp.OperationReply && p.SenderIP == addr {
			if m := p.SenderHardwareAddr.String(); !slices.Contains(macs, m) {
				macs = append(macs, m)
			}
		}
	}
	slices.Sort(macs)
	return macs, nil
}
