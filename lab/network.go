package lab

import (
	"fmt"
	"os/exec"
	"strings"
)

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

func createBridge(name, cidr string) error {
	if linkExists(name) {
		_ = ip("link", "del", name)
	}
	if err := ip("link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	if err := ip("addr", "add", cidr, "dev", name); err != nil {
		return err
	}
	return ip("link", "set", name, "up")
}

// Partition cuts the node's link to the bridge (both directions).
func (l *Lab) Partition(node string) error {
	return l.setLink(node, "down")
}

// Heal restores the node's link.
func (l *Lab) Heal(node string) error {
	return l.setLink(node, "up")
}

func (l *Lab) setLink(node, state string) error {
	s := l.State()
	if s == nil {
		return ErrNoLab
	}
	n, err := s.Node(node)
	if err != nil {
		return err
	}
	if !alive(n.PID) {
		return fmt.Errorf("lab: %s is not running", n.Name)
	}
	return ip("link", "set", "dev", n.Veth(), state)
}
