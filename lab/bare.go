package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/openssi/openssi/internal/rootfs"
)

// A bare lab is what an administrator starts an Ansible rollout from: N
// booted Debian nodes with sshd and Python, each with its own host key and
// root's authorized key (the lab's), a Debian mirror in its apt sources
// (the lab's server proxies it: the nodes have no other network), and
// neither Consul nor openssi. The roles under ansible/ do the rest.

// UpBare brings up n bare nodes and waits until each accepts the lab's
// key over SSH. The first three are meant as Consul servers (the inventory
// says so); Serve must run for the nodes to reach the repository.
func (l *Lab) UpBare(ctx context.Context, n int) error {
	if l.state != nil {
		return fmt.Errorf("%w (%d nodes, state in %s): tear it down with `lab down` first", ErrUp, len(l.state.Nodes), l.opts.Dir)
	}
	if n < 1 || n > 200 {
		return fmt.Errorf("lab: -n %d is out of range: want 1..200 nodes", n)
	}
	for _, f := range []struct{ what, path string }{{"repository", filepath.Join(l.opts.Dist, "repo")}, {"consul binary", l.opts.Consul}} {
		if f.path == "" {
			return fmt.Errorf("lab: no %s given", f.what)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("lab: %s: %w (run `make packages repo consul` first)", f.what, err)
		}
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "ip", "mount", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("lab: %s not found: apt-get install systemd-container iproute2 util-linux openssh-client", tool)
		}
	}
	start := time.Now()
	dist, err := filepath.Abs(l.opts.Dist)
	if err != nil {
		return err
	}
	keys := filepath.Join(l.opts.Dir, "ssh")
	s := &State{Bridge: l.opts.Prefix + "br0", Subnet: l.opts.Subnet, Dist: dist, Bare: true, SSH: &SSHFiles{
		Key:        filepath.Join(keys, "id_ed25519"),
		KnownHosts: filepath.Join(keys, "known_hosts"),
	}}
	l.state = s
	if err := l.save(); err != nil {
		return err
	}
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	if err := sshKeygen(s.SSH.Key, "openssi-lab"); err != nil {
		return err
	}
	l.progress("bridge %s on %s.0/24", s.Bridge, s.Subnet)
	if err := createBridge(s.Bridge, s.Subnet+".1/24"); err != nil {
		return err
	}
	root, err := rootfs.Ensure(filepath.Join(l.opts.CacheDir, "rootfs"), l.opts.Log)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := l.recordBareNode(i <= 3); err != nil {
			return err
		}
	}
	l.progress("laying down %d node disks (overlay over %s)", n, root)
	for i := range n {
		if err := l.prepareBare(i, root); err != nil {
			return err
		}
	}
	if err := l.writeKnownHosts(); err != nil {
		return err
	}
	if err := l.forEach(ctx, "boot", func(ctx context.Context, i int) error { return l.bootBare(ctx, i) }); err != nil {
		return err
	}
	l.progress("%d bare nodes reachable over SSH in %s", n, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// AddBare adds one more bare node to a running bare lab (a Consul client
// in the inventory), boots it and waits until it accepts the lab's key:
// the host an add-node playbook brings into the cluster.
func (l *Lab) AddBare(ctx context.Context) (NodeState, error) {
	s := l.State()
	if s == nil {
		return NodeState{}, ErrNoLab
	}
	if !s.Bare {
		return NodeState{}, fmt.Errorf("lab: the lab is not bare: nodes are added only to a `lab up --bare` lab")
	}
	root, err := rootfs.Ensure(filepath.Join(l.opts.CacheDir, "rootfs"), l.opts.Log)
	if err != nil {
		return NodeState{}, err
	}
	if err := l.recordBareNode(false); err != nil {
		return NodeState{}, err
	}
	i := len(l.State().Nodes) - 1
	if err := l.prepareBare(i, root); err != nil {
		return NodeState{}, err
	}
	if err := l.writeKnownHosts(); err != nil {
		return NodeState{}, err
	}
	if err := l.bootBare(ctx, i); err != nil {
		return NodeState{}, err
	}
	n := l.State().Nodes[i]
	// The other nodes learn its name, as they know each other's.
	for _, o := range l.State().Nodes[:i] {
		p := filepath.Join(o.Root(), "etc/hosts")
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return n, fmt.Errorf("lab: add %s to the hosts of %s: %w", n.Name, o.Name, err)
		}
		_, err = fmt.Fprintf(f, "%s\t%s\n", n.IP, n.Name)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// recordBareNode records node len(Nodes)+1 in the state.
func (l *Lab) recordBareNode(server bool) error {
	s := l.State()
	i := len(s.Nodes) + 1
	if i > 200 {
		return fmt.Errorf("lab: a lab has at most 200 nodes")
	}
	ns := NodeState{
		Name:    fmt.Sprintf("node%d", i),
		Machine: fmt.Sprintf("%s-node%d", l.opts.Prefix, i),
		IP:      fmt.Sprintf("%s.%d", l.opts.Subnet, 10+i),
		Server:  server,
		Dir:     filepath.Join(l.opts.Dir, fmt.Sprintf("node%d", i)),
	}
	if len(ns.Veth()) > 15 {
		return fmt.Errorf("lab: prefix %q is too long: link name %q exceeds 15 bytes", l.opts.Prefix, ns.Veth())
	}
	l.mu.Lock()
	l.state.Nodes = append(l.state.Nodes, ns)
	l.mu.Unlock()
	return l.save()
}

// prepareBare mounts bare node i's overlay over root and writes its files.
func (l *Lab) prepareBare(i int, root string) error {
	s := l.State()
	n := &s.Nodes[i]
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", root, filepath.Join(n.Dir, "upper"), filepath.Join(n.Dir, "work"))
	if err := syscall.Mount("overlay", n.Root(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("lab: mount the disk of %s: %w", n.Name, err)
	}
	l.mu.Lock()
	l.state.Nodes[i].Mounted = true
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	pub, err := os.ReadFile(s.SSH.Key + ".pub")
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := writeNodeFiles(*n, bareFiles(*n, s.Nodes, ServedAt(s.Subnet), string(pub))); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(n.Root(), "root/.ssh"), 0o700); err != nil {
		return err
	}
	// The image's host keys are the same in every node: each node gets
	// its own, and only that one is offered (sshd_config.d above).
	keys, _ := filepath.Glob(filepath.Join(n.Root(), "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := sshKeygen(filepath.Join(n.Root(), "etc/ssh/ssh_host_ed25519_key"), "root@"+n.Name); err != nil {
		return err
	}
	// Only the lab's mirror: the nodes have no other network.
	_ = os.Remove(filepath.Join(n.Root(), "etc/apt/sources.list"))
	for unit, target := range map[string]string{
		"ssh.service":              "/lib/systemd/system/ssh.service",
		"systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
	} {
		link := filepath.Join(n.Root(), "etc/systemd/system/multi-user.target.wants", unit)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	// A journal on disk, so a killed node's logs can still be read.
	return os.MkdirAll(filepath.Join(n.Root(), "var/log/journal"), 0o755)
}

type nodeFile struct {
	content string
	mode    os.FileMode
}

// writeNodeFiles writes files (paths relative to the node's root) into
// n's disk with their modes, whatever the umask, making their
// directories.
func writeNodeFiles(n NodeState, files map[string]nodeFile) error {
	for rel, f := range files {
		p := filepath.Join(n.Root(), rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("lab: write %s of %s: %w", rel, n.Name, err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// bareFiles are the files a bare node gets beyond the image, by path
// relative to its root.
func bareFiles(n NodeState, nodes []NodeState, sv Served, authorizedKey string) map[string]nodeFile {
	return map[string]nodeFile{
		"etc/hostname":                         {n.Name + "\n", 0o644},
		"etc/hosts":                            {hostsFile(nodes, n), 0o644},
		"etc/systemd/network/10-host0.network": {networkFile(n.IP), 0o644},
		"etc/apt/sources.list.d/debian.sources": {fmt.Sprintf(`# Debian through the lab's server (the nodes have no other network).
Types: deb
URIs: %s
Suites: %s %s-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: %s
Suites: %s-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`, sv.Debian, rootfs.Suite, rootfs.Suite, sv.DebianSecurity, rootfs.Suite), 0o644},
		"etc/apt/apt.conf.d/90openssi-lab": {"APT::Install-Recommends \"false\";\nAcquire::Languages \"none\";\n", 0o644},
		"etc/ssh/sshd_config.d/openssi-lab.conf": {`# The OpenSSI lab: root logs in with the lab's key only.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
`, 0o644},
		"root/.ssh/authorized_keys": {authorizedKey, 0o600},
	}
}

// bootBare boots node i and waits until it accepts the lab's key.
func (l *Lab) bootBare(ctx context.Context, i int) error {
	if err := l.boot(ctx, i); err != nil {
		return err
	}
	n := l.State().Nodes[i]
	return l.waitSSH(ctx, n, time.Minute)
}

// SSHArgs are the ssh options that reach a bare lab's nodes as root with
// its key and known host keys.
func (s *State) SSHArgs() []string {
	return []string{"-i", s.SSH.Key, "-o", "UserKnownHostsFile=" + s.SSH.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"}
}

// waitSSH waits until ssh root@node runs a command with the lab's key,
// the node's host key verified.
func (l *Lab) waitSSH(ctx context.Context, n NodeState, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s := l.State()
	last := "nothing yet"
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(n.IP, "22"))
		if err == nil {
			c.Close()
			args := append(s.SSHArgs(), "root@"+n.IP, "python3", "-c", "pass")
			out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
			if err == nil {
				return nil
			}
			last = fmt.Sprintf("ssh: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s does not accept the lab's key over SSH after %s: %s", n.Name, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeKnownHosts writes every node's host key, by address and by name.
func (l *Lab) writeKnownHosts() error {
	s := l.State()
	var b strings.Builder
	for _, n := range s.Nodes {
		if !n.Mounted {
			continue
		}
		pub, err := os.ReadFile(filepath.Join(n.Root(), "etc/ssh/ssh_host_ed25519_key.pub"))
		if err != nil {
			return fmt.Errorf("lab: host key of %s: %w", n.Name, err)
		}
		f := strings.Fields(string(pub))
		if len(f) < 2 {
			return fmt.Errorf("lab: host key of %s is malformed", n.Name)
		}
		fmt.Fprintf(&b, "%s,%s %s %s\n", n.IP, n.Name, f[0], f[1])
	}
	return os.WriteFile(s.SSH.KnownHosts, []byte(b.String()), 0o600)
}

// sshKeygen makes an ed25519 key pair without a passphrase at path.
func sshKeygen(path, comment string) error {
	for _, p := range []string{path, path + ".pub"} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ssh-keygen %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
