package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/rootfs"
)

// Options configure a lab.
type Options struct {
	// Dir holds the state file and the nodes' disks. Default
	// /var/lib/openssi-lab.
	Dir string
	// Prefix names the machines (<prefix>-node1) and the bridge
	// (<prefix>br0); two labs with different prefixes and subnets can run
	// side by side. Default "lab".
	Prefix string
	// Subnet is the /24 prefix of the private test subnet. Default "10.77.0".
	Subnet string
	// CacheDir holds the cached rootfs. Default ~/.cache/openssi.
	CacheDir string
	// Dist is the build's dist/ directory: `make repo` leaves the signed
	// apt repository in dist/repo/apt and its public key in
	// dist/repo/openssi-archive-keyring.gpg.
	Dist string
	// Consul is the pinned consul binary copied into every node.
	Consul string
	// Log receives progress lines. Default io.Discard.
	Log io.Writer
	// Gossip replaces consulagent.TunedSettings in the nodes' Consul
	// configuration (benchmarks comparing gossip settings); nil keeps
	// the tuned profile every node ships with.
	Gossip *consulagent.Tuning
	// CRIU, when set, is a CRIU binary (`make criu`'s build) installed
	// in every node as /usr/local/sbin/criu, the nodes booted as CRIU
	// needs (criuNspawn); empty: no CRIU, the usual confinement.
	CRIU string
	// ConsulLogLevel is the nodes' Consul log_level. Default "warn";
	// "info" shows memberlist's and serf's verdicts on members.
	ConsulLogLevel string
}

func (o *Options) defaults() {
	if o.Dir == "" {
		o.Dir = "/var/lib/openssi-lab"
	}
	if o.Prefix == "" {
		o.Prefix = "lab"
	}
	if o.Subnet == "" {
		o.Subnet = "10.77.0"
	}
	if o.CacheDir == "" {
		home, _ := os.UserHomeDir()
		o.CacheDir = filepath.Join(home, ".cache", "openssi")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.ConsulLogLevel == "" {
		o.ConsulLogLevel = "warn"
	}
}

// Lab is a lab on this machine.
type Lab struct {
	opts  Options
	mu    sync.Mutex
	state *State
}

// ErrUp is returned by Up when a lab is already up.
var ErrUp = errors.New("lab: a lab is already up")

// ErrNotRoot is returned when the caller is not root.
var ErrNotRoot = errors.New("lab: must run as root (it creates network namespaces, a bridge, overlay mounts and containers): run it with sudo")

// Open returns the lab described by opts, loading its state when it is up.
func Open(opts Options) (*Lab, error) {
	opts.defaults()
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	l := &Lab{opts: opts}
	s, err := LoadState(opts.Dir)
	if err != nil && !errors.Is(err, ErrNoLab) {
		return nil, err
	}
	l.state = s
	return l, nil
}

func (l *Lab) progress(format string, args ...any) {
	fmt.Fprintf(l.opts.Log, "lab: "+format+"\n", args...)
}

// State returns a copy of the lab's state (nil when down).
func (l *Lab) State() *State {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == nil {
		return nil
	}
	c := *l.state
	c.Nodes = append([]NodeState(nil), l.state.Nodes...)
	return &c
}

func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.save(l.opts.Dir)
}

// Up brings up n nodes and waits until every node is UP in the membership.
func (l *Lab) Up(ctx context.Context, n int) error {
	if l.state != nil {
		return fmt.Errorf("%w (%d nodes, state in %s): tear it down with `lab down` first", ErrUp, len(l.state.Nodes), l.opts.Dir)
	}
	if n < 1 || n > 200 {
		return fmt.Errorf("lab: -n %d is out of range: want 1..200 nodes", n)
	}
	for _, f := range []struct{ what, path string }{{"apt repository", l.aptRepo()}, {"repository key", l.repoKey()}, {"consul binary", l.opts.Consul}} {
		if f.path == "" {
			return fmt.Errorf("lab: no %s given", f.what)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("lab: %s: %w (run `make packages repo consul` first, or `make lab`)", f.what, err)
		}
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "ip", "mount", "systemd-sysusers"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("lab: %s not found: apt-get install systemd-container iproute2 util-linux", tool)
		}
	}
	start := time.Now()
	l.progress("preparing the rootfs (cached after the first run)")
	root, err := rootfs.Ensure(filepath.Join(l.opts.CacheDir, "rootfs"), l.opts.Log)
	if err != nil {
		return err
	}
	servers := n
	if servers > 3 {
		servers = 3
	}
	dist, err := filepath.Abs(l.opts.Dist)
	if err != nil {
		return err
	}
	secrets, err := newConsulSecrets()
	if err != nil {
		return err
	}
	s := &State{Bridge: l.opts.Prefix + "br0", Subnet: l.opts.Subnet, Dist: dist, Consul: secrets, CRIU: l.opts.CRIU != ""}
	var serverIPs []string
	for i := 1; i <= n; i++ {
		ns := NodeState{
			Name:    fmt.Sprintf("node%d", i),
			Machine: fmt.Sprintf("%s-node%d", l.opts.Prefix, i),
			IP:      fmt.Sprintf("%s.%d", l.opts.Subnet, 10+i),
			Server:  i <= servers,
			Dir:     filepath.Join(l.opts.Dir, fmt.Sprintf("node%d", i)),
		}
		if ns.Tokens, err = newNodeTokens(); err != nil {
			return err
		}
		if len(ns.Veth()) > 15 {
			return fmt.Errorf("lab: prefix %q is too long: link name %q exceeds 15 bytes", l.opts.Prefix, ns.Veth())
		}
		if ns.Server {
			serverIPs = append(serverIPs, ns.IP)
		}
		s.Nodes = append(s.Nodes, ns)
	}
	l.state = s
	if err := l.save(); err != nil {
		return err
	}
	l.progress("bridge %s on %s.0/24", s.Bridge, s.Subnet)
	if err := createBridge(s.Bridge, s.Subnet+".1/24"); err != nil {
		return err
	}
	l.progress("laying down %d node disks (overlay over %s)", n, root)
	for i := range s.Nodes {
		if err := l.prepare(&s.Nodes[i], root, serverIPs); err != nil {
			return err
		}
		if err := l.save(); err != nil {
			return err
		}
	}
	// The servers first: the tokens the clients' agents need (auto_encrypt
	// signs with the agent's token) are made once the servers have a
	// leader.
	isServer := func(i int) bool { return s.Nodes[i].Server }
	if err := l.forSome(ctx, "boot the Consul servers", isServer, func(ctx context.Context, i int) error { return l.boot(ctx, i) }); err != nil {
		return err
	}
	l.progress("creating the Consul ACL policies and tokens")
	if err := l.bootstrapACL(ctx); err != nil {
		return err
	}
	if n > servers {
		if err := l.forSome(ctx, "boot the Consul clients", func(i int) bool { return !isServer(i) }, func(ctx context.Context, i int) error { return l.boot(ctx, i) }); err != nil {
			return err
		}
	}
	if err := l.forEach(ctx, "install openssi with apt-get", func(ctx context.Context, i int) error { return l.install(ctx, i) }); err != nil {
		return err
	}
	l.progress("waiting until all %d nodes are UP", n)
	if err := l.WaitAllUp(ctx, 2*time.Minute); err != nil {
		return err
	}
	l.progress("%d nodes UP in %s", n, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// forEach runs f for every node in parallel, with progress lines.
func (l *Lab) forEach(ctx context.Context, what string, f func(ctx context.Context, i int) error) error {
	return l.forSome(ctx, what, func(int) bool { return true }, f)
}

// forSome runs f in parallel for the nodes i for which which(i) holds.
func (l *Lab) forSome(ctx context.Context, what string, which func(i int) bool, f func(ctx context.Context, i int) error) error {
	s := l.State()
	var idx []int
	for i := range s.Nodes {
		if which(i) {
			idx = append(idx, i)
		}
	}
	l.progress("%s: %d nodes", what, len(idx))
	errs := make([]error, len(s.Nodes))
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t := time.Now()
			errs[i] = f(ctx, i)
			if errs[i] == nil {
				l.progress("  %s: %s done in %s", s.Nodes[i].Name, what, time.Since(t).Round(100*time.Millisecond))
			}
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prepare mounts the node's overlay and writes its files.
// gossip is the Consul tuning the nodes get.
func (l *Lab) gossip() consulagent.Tuning {
	if l.opts.Gossip != nil {
		return *l.opts.Gossip
	}
	return consulagent.TunedSettings()
}

func (l *Lab) prepare(n *NodeState, root string, servers []string) error {
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", root, filepath.Join(n.Dir, "upper"), filepath.Join(n.Dir, "work"))
	if err := syscall.Mount("overlay", n.Root(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("lab: mount the disk of %s: %w", n.Name, err)
	}
	n.Mounted = true
	s := l.State()
	number := 0
	for i := range s.Nodes {
		if s.Nodes[i].Name == n.Name {
			number = i + 1
		}
	}
	files := map[string]nodeFile{
		"etc/hostname":                         {n.Name + "\n", 0o644},
		"etc/hosts":                            {hostsFile(s.Nodes, *n), 0o644},
		"etc/systemd/network/10-host0.network": {networkFile(n.IP), 0o644},
		// It holds the gossip key and the agent's token.
		"etc/consul.d/consul.hcl":             {consulHCL(*n, servers, Datacenter, s.Consul, l.gossip(), l.opts.ConsulLogLevel), 0o600},
		"etc/consul.d/tls/ca.pem":             {s.Consul.CACert, 0o644},
		"etc/systemd/system/consul.service":   {consulUnit, 0o644},
		"etc/profile.d/consul.sh":             {consulProfile, 0o644},
		"etc/openssi/openssi.yaml":            {openssiYAML(number), 0o644},
		"etc/openssi/consul.token":            {n.Tokens.Daemons + "\n", 0o600},
		"etc/apt/sources.list.d/openssi.list": {aptSource, 0o644},
		"etc/apt/apt.conf.d/90openssi-lab":    {"APT::Install-Recommends \"false\";\nAcquire::Languages \"none\";\n", 0o644},
	}
	if s.CRIU {
		bin, err := os.ReadFile(l.opts.CRIU)
		if err != nil {
			return fmt.Errorf("lab: the CRIU binary: %w (run `make criu`)", err)
		}
		files["usr/local/sbin/criu"] = nodeFile{string(bin), 0o755}
		files["etc/systemd/system/openssi-lab-criu.service"] = nodeFile{criuSysctlUnit, 0o644}
	}
	if n.Tokens.Root != "" {
		files[ConsulRootTokenFile[1:]] = nodeFile{n.Tokens.Root + "\n", 0o600}
	}
	if n.Server {
		cert, key, err := s.Consul.serverCert(*n)
		if err != nil {
			return err
		}
		files["etc/consul.d/tls/server.pem"] = nodeFile{cert, 0o644}
		files["etc/consul.d/tls/server-key.pem"] = nodeFile{key, 0o600}
	}
	if err := writeNodeFiles(*n, files); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(n.Root(), "etc/consul.d"), 0o700); err != nil {
		return err
	}
	// The daemons' user, before Consul first starts.
	sysu := exec.Command("systemd-sysusers", "--root="+n.Root(), "-")
	sysu.Stdin = strings.NewReader(sysusers)
	if out, err := sysu.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: create the user %s in %s: %w: %s", daemonsUser, n.Name, err, out)
	}
	// Only the local repository: the nodes have no other network.
	_ = os.Remove(filepath.Join(n.Root(), "etc/apt/sources.list"))
	_ = os.Remove(filepath.Join(n.Root(), "etc/apt/sources.list.d/debian.sources"))
	wants := map[string]string{
		"multi-user.target.wants/consul.service":           "/etc/systemd/system/consul.service",
		"multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
	}
	if s.CRIU {
		wants["sysinit.target.wants/openssi-lab-criu.service"] = "/etc/systemd/system/openssi-lab-criu.service"
	}
	for unit, target := range wants {
		link := filepath.Join(n.Root(), "etc/systemd/system", unit)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	for _, f := range []struct{ src, dst string }{
		{l.opts.Consul, "usr/local/bin/consul"},
		{l.repoKey(), "usr/share/keyrings/openssi-lab.gpg"},
	} {
		if err := copyFile(f.src, filepath.Join(n.Root(), f.dst)); err != nil {
			return fmt.Errorf("lab: copy %s into %s: %w", f.src, n.Name, err)
		}
	}
	// A journal on disk, so a killed node's logs can still be read.
	if err := os.MkdirAll(filepath.Join(n.Root(), "var/log/journal"), 0o755); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(n.Root(), "srv/openssi-dist"), 0o755)
}

func (l *Lab) aptRepo() string { return filepath.Join(l.opts.Dist, "repo", "apt") }
func (l *Lab) repoKey() string {
	return filepath.Join(l.opts.Dist, "repo", "openssi-archive-keyring.gpg")
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

// install installs openssi from the local repository and starts it.
func (l *Lab) install(ctx context.Context, i int) error {
	n := l.State().Nodes[i]
	steps := [][]string{
		{"apt-get", "-q", "update"},
		// The lab wrote /etc/openssi/openssi.yaml first: keep it.
		{"apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "-o", "Dpkg::Options::=--force-confdef", "install", "openssi"},
		{"systemctl", "start", "openssi.target"},
	}
	for _, st := range steps {
		if out, err := l.Exec(ctx, n.Name, st...); err != nil {
			return fmt.Errorf("lab: %s: %s: %w\n%s", n.Name, strings.Join(st, " "), err, tail(out, 15))
		}
	}
	return nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// WaitAllUp waits until node1's clmsd reports every running node UP.
func (l *Lab) WaitAllUp(ctx context.Context, timeout time.Duration) error {
	s := l.State()
	want := 0
	for _, n := range s.Nodes {
		if n.PID != 0 {
			want++
		}
	}
	var first string
	for _, n := range s.Nodes {
		if n.PID != 0 {
			first = n.Name
			break
		}
	}
	return l.WaitFor(ctx, first, timeout, fmt.Sprintf("%d nodes UP", want), func(v cluster.View) bool {
		up := 0
		for _, m := range v.Nodes {
			if m.State == cluster.Up {
				up++
			}
		}
		return up == want
	})
}

// View returns `ssi nodes` of a node, decoded.
func (l *Lab) View(ctx context.Context, node string) (cluster.View, error) {
	out, err := l.Exec(ctx, node, "ssi", "nodes", "-o", "json")
	if err != nil {
		return cluster.View{}, fmt.Errorf("%s: %w: %s", node, err, strings.TrimSpace(out))
	}
	var v cluster.View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return cluster.View{}, fmt.Errorf("%s: decode ssi nodes: %w", node, err)
	}
	return v, nil
}

// WaitFor polls a node's view until cond holds; on timeout the error says
// what it last saw.
func (l *Lab) WaitFor(ctx context.Context, node string, timeout time.Duration, what string, cond func(cluster.View) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "nothing yet"
	for {
		v, err := l.View(ctx, node)
		if err == nil {
			if cond(v) {
				return nil
			}
			last = v.Summary()
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s: gave up waiting for %s after %s; last saw: %s", node, what, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
