package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openssi/openssi/client/cluster"
)

// Logs returns a node's journal (of one unit when unit is not empty). A
// killed node's journal is read from its disk.
func (l *Lab) Logs(ctx context.Context, node, unit string, lines int) (string, error) {
	s := l.State()
	if s == nil {
		return "", ErrNoLab
	}
	n, err := s.Node(node)
	if err != nil {
		return "", err
	}
	args := []string{"--no-pager", "-o", "short-precise", "-n", fmt.Sprint(lines)}
	if unit != "" {
		args = append(args, "-u", unit)
	}
	if alive(n.PID) {
		return l.Exec(ctx, n.Name, append([]string{"journalctl"}, args...)...)
	}
	out, err := exec.CommandContext(ctx, "journalctl", append([]string{"-D", filepath.Join(n.Root(), "var/log/journal")}, args...)...).CombinedOutput()
	return string(out), err
}

// Status prints the nodes and, when a node answers, the membership.
func (l *Lab) Status(ctx context.Context, w io.Writer) error {
	s := l.State()
	if s == nil {
		return ErrNoLab
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMACHINE\tADDRESS\tCONSUL\tCONTAINER\tLINK")
	var answering string
	for _, n := range s.Nodes {
		role := "client"
		if n.Server {
			role = "server"
		}
		state := "killed"
		link := "-"
		if alive(n.PID) {
			state = "running"
			link = "up"
			if out, err := exec.Command("ip", "-o", "link", "show", "dev", n.Veth()).Output(); err == nil && !strings.Contains(string(out), ",UP") && !strings.Contains(string(out), "<UP") {
				link = "cut (partitioned)"
			}
			if answering == "" && link == "up" {
				answering = n.Name
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Machine, n.IP, role, state, link)
	}
	tw.Flush()
	if answering == "" {
		return nil
	}
	if s.Bare {
		if _, err := l.Exec(ctx, answering, "test", "-x", "/usr/bin/ssi"); err != nil {
			fmt.Fprintf(w, "\nbare lab: openssi is not installed yet (served at %s; bin/lab inventory)\n", ServedAt(s.Subnet).Base)
			return nil
		}
	}
	fmt.Fprintf(w, "\nmembership as %s sees it:\n", answering)
	out, err := l.Exec(ctx, answering, "ssi", "nodes")
	fmt.Fprint(w, out)
	if err != nil {
		return fmt.Errorf("lab: ssi nodes on %s: %w", answering, err)
	}
	return nil
}

// Upgrade rolls the packages of the repository (rebuilt by the caller) out
// node by node: each node upgrades, then must be UP with every unit active
// again before the next one starts.
func (l *Lab) Upgrade(ctx context.Context) error {
	s := l.State()
	if s == nil {
		return ErrNoLab
	}
	for _, n := range s.Nodes {
		if !alive(n.PID) {
			return fmt.Errorf("lab: %s is not running: start it before an upgrade", n.Name)
		}
	}
	for _, n := range s.Nodes {
		t := time.Now()
		l.progress("upgrading %s", n.Name)
		for _, st := range [][]string{
			{"apt-get", "-q", "update"},
			{"apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "install", "--only-upgrade", "openssi"},
		} {
			if out, err := l.Exec(ctx, n.Name, st...); err != nil {
				return fmt.Errorf("lab: %s: %s: %w\n%s", n.Name, strings.Join(st, " "), err, tail(out, 15))
			}
		}
		if err := l.WaitUnitsActive(ctx, n.Name, time.Minute); err != nil {
			return err
		}
		if err := l.WaitFor(ctx, n.Name, time.Minute, n.Name+" UP", func(v cluster.View) bool {
			for _, m := range v.Nodes {
				if m.Number == v.ThisNode {
					return m.State == cluster.Up
				}
			}
			return false
		}); err != nil {
			return err
		}
		l.progress("  %s upgraded in %s", n.Name, time.Since(t).Round(100*time.Millisecond))
	}
	return nil
}

// WaitUnitsActive waits until every openssi unit of a node is active.
func (l *Lab) WaitUnitsActive(ctx context.Context, node string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		out, err := l.Exec(ctx, node, "systemctl", "list-units", "--all", "--no-legend", "--plain", "openssi*")
		if err == nil {
			bad := []string{}
			n := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) < 3 {
					continue
				}
				n++
				if f[2] != "active" {
					bad = append(bad, f[0]+"="+f[2])
				}
			}
			if n > 0 && len(bad) == 0 {
				return nil
			}
			last = fmt.Sprintf("%d units, not active: %v", n, bad)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("lab: %s: units not all active after %s: %s", node, timeout, last)
}

// Shell runs an interactive login shell in a node.
func (l *Lab) Shell(ctx context.Context, node string) error {
	cmd, err := l.Command(ctx, node, "/bin/bash", "-l")
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
