// Command lab runs a multi-node OpenSSI cluster on this machine (see
// package lab). `make lab` builds everything and runs `lab up -n 3`.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode()) // `lab exec` passes the command's status on
		}
		fmt.Fprintln(os.Stderr, "lab:", trimPrefix(err.Error()))
		os.Exit(1)
	}
}

func trimPrefix(s string) string {
	if len(s) > 5 && s[:5] == "lab: " {
		return s[5:]
	}
	return s
}

type flags struct {
	dir, prefix, subnet, dist, consul string
	criu                              string // up --criu
}

func (f *flags) open(cmd *cobra.Command) (*lab.Lab, error) {
	return lab.Open(lab.Options{
		Dir: f.dir, Prefix: f.prefix, Subnet: f.subnet, Dist: f.dist, Consul: f.consul,
		CRIU: f.criu, Log: cmd.ErrOrStderr(),
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newRoot() *cobra.Command {
	f := &flags{}
	wd, _ := os.Getwd()
	root := &cobra.Command{
		Use:   "lab",
		Short: "Run a multi-node OpenSSI cluster on this machine",
		Long: `lab boots N Debian nodes on this machine as systemd-nspawn containers with
real systemd, each with its own network namespace on a private bridge, runs
Consul (the first three nodes are servers) and installs openssi from the local
signed repository built from the working tree. Consul is locked down: ACLs
deny by default (each node's daemons have their own token in
/etc/openssi/consul.token, and its root daemons, vprocd and initfailover, a
root token for their peer keys in /etc/openssi/consul-root.token), gossip is encrypted, RPC takes TLS only and the
HTTP API is a root-only socket (/run/consul/http.sock). The management token
is kept in the lab's state file only; lab exec and lab shell pass it to root
sessions as CONSUL_HTTP_TOKEN. Root is required.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&f.dir, "dir", envOr("OPENSSI_LAB_DIR", "/var/lib/openssi-lab"), "state and node disks (env OPENSSI_LAB_DIR)")
	pf.StringVar(&f.prefix, "prefix", envOr("OPENSSI_LAB_PREFIX", "lab"), "name prefix of machines and the bridge")
	pf.StringVar(&f.subnet, "subnet", envOr("OPENSSI_LAB_SUBNET", "10.77.0"), "private /24 of the lab, as its first three octets")
	pf.StringVar(&f.dist, "dist", envOr("OPENSSI_LAB_DIST", filepath.Join(wd, "dist")), "dist/ directory holding repo/ (from `make repo`)")
	pf.StringVar(&f.consul, "consul", envOr("CONSUL_BIN", consulagent.CachedBinary()), "pinned consul binary (from `make consul`)")

	var n int
	var bare bool
	up := &cobra.Command{
		Use:   "up [-n N] [--bare]",
		Short: "Bring up N nodes (default 3) and wait until all are UP",
		Long: `Bring up N nodes (default 3) and wait until all are UP.

With --bare the nodes get neither Consul nor openssi: they boot with sshd
and Python, accept root over SSH with a key the lab makes, and the lab
serves them the signed repository, the pinned Consul and a Debian mirror
from the bridge address, for an Ansible rollout (bin/lab inventory).

With --criu PATH every node gets that CRIU binary (make criu builds it) as
/usr/local/sbin/criu and boots as CRIU needs: without nspawn's system-call
filter, with CAP_SYS_RESOURCE and CAP_CHECKPOINT_RESTORE and a writable
kernel.ns_last_pid. Such nodes are less confined than the default ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			if bare {
				if f.criu != "" {
					return fmt.Errorf("lab: --criu is for a lab with openssi: bring it up without --bare")
				}
				return upBare(cmd, f, l, n)
			}
			if err := l.Up(cmd.Context(), n); err != nil {
				if !errors.Is(err, lab.ErrUp) {
					fmt.Fprintln(cmd.ErrOrStderr(), "lab: up failed; `lab down` removes what was made")
				}
				return err
			}
			if err := l.Status(cmd.Context(), cmd.OutOrStdout()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), `
Try:
  bin/lab exec 1 -- ssi nodes          # the membership from node 1
  bin/lab exec 1 -- ssi events &       # follow events, then in another shell:
  bin/lab kill 3                       # power-cut node 3: NODEDOWN within seconds
  bin/lab start 3                      # boot it again: NODEUP, same node number
  bin/lab shell 2                      # a root shell on node 2
  bin/lab exec 1 -- consul members     # root sessions carry Consul's management token
  bin/lab down                         # remove everything
`)
			return nil
		},
	}
	up.Flags().IntVarP(&n, "nodes", "n", 3, "number of nodes")
	up.Flags().BoolVar(&bare, "bare", false, "boot nodes with sshd and Python only, for an Ansible rollout")
	up.Flags().StringVar(&f.criu, "criu", "", "install this CRIU binary (`make criu`) in every node and boot the nodes as CRIU needs")
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve a bare lab's nodes the repository, Consul and a Debian mirror (foreground)",
		Long: `Serve a bare lab's nodes, on the bridge address, the signed repository of
--dist (repo/), the pinned consul binary (also as HashiCorp's release zip)
and a proxy of the Debian archive (OPENSSI_DEBIAN_MIRROR), until
interrupted. lab up --bare starts one in the background; lab down stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			srv, err := l.Serve()
			if err != nil {
				return err
			}
			go func() {
				<-cmd.Context().Done()
				_ = srv.Close()
			}()
			return srv.Wait()
		},
	}
	var invOut string
	inventory := &cobra.Command{
		Use:   "inventory [-o FILE]",
		Short: "Print the Ansible inventory of a bare lab",
		Long: `Print the Ansible inventory (YAML) of a bare lab: every node in the groups
openssi, consul_servers (the first three) and consul_clients, reached as
root with the lab's SSH key, and the variables that point the roles at what
the lab serves. Then: ansible-playbook -i FILE ansible/site.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			b, err := l.Inventory(nil)
			if err != nil {
				return err
			}
			if invOut == "" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(invOut, b, 0o644)
		},
	}
	inventory.Flags().StringVarP(&invOut, "output", "o", "", "write the inventory to FILE instead of standard output")
	add := &cobra.Command{
		Use:   "add",
		Short: "Boot one more bare node (a bare lab only), for add-node.yml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			node, err := l.AddBare(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is up at %s: regenerate the inventory (bin/lab inventory) and run ansible/add-node.yml for it\n", node.Name, node.IP)
			return nil
		},
	}

	one := func(use, short string, run func(ctx context.Context, l *lab.Lab, node string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " NODE", Short: short, Args: exactNode,
			RunE: func(cmd *cobra.Command, args []string) error {
				l, err := f.open(cmd)
				if err != nil {
					return err
				}
				return run(cmd.Context(), l, args[0])
			},
		}
	}
	down := &cobra.Command{
		Use: "down", Short: "Remove every container, link, bridge, mount and disk of the lab (idempotent)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			if err := l.Down(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "lab is down")
			return nil
		},
	}
	status := &cobra.Command{
		Use: "status", Short: "Show the nodes and the membership", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			if err := l.Status(cmd.Context(), cmd.OutOrStdout()); errors.Is(err, lab.ErrNoLab) {
				return errors.New("no lab is up: start one with `make lab` or `bin/lab up -n 3`")
			} else if err != nil {
				return err
			}
			return nil
		},
	}
	exe := &cobra.Command{
		Use: "exec NODE -- CMD [ARGS...]", Short: "Run a command on a node (exit status passed on)",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			c, err := l.Command(cmd.Context(), args[0], args[1:]...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return c.Run()
		},
	}
	var lines int
	logs := &cobra.Command{
		Use: "logs NODE [UNIT]", Short: "Show a node's journal (of one unit)", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			unit := ""
			if len(args) == 2 {
				unit = args[1]
			}
			out, err := l.Logs(cmd.Context(), args[0], unit, lines)
			fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	logs.Flags().IntVarP(&lines, "lines", "n", 100, "number of journal lines")
	upgrade := &cobra.Command{
		Use: "upgrade", Short: "Rebuild the packages and roll them out node by node", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(cmd)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "lab: rebuilding packages and repository (make packages repo)")
			mk := exec.CommandContext(cmd.Context(), "make", "packages", "repo")
			mk.Stdout, mk.Stderr = cmd.ErrOrStderr(), cmd.ErrOrStderr()
			if err := mk.Run(); err != nil {
				return fmt.Errorf("make packages repo: %w", err)
			}
			return l.Upgrade(cmd.Context())
		},
	}
	root.AddCommand(up, down, status, exe, logs, upgrade, serve, inventory, add,
		one("shell", "Open a root shell on a node", func(ctx context.Context, l *lab.Lab, node string) error { return l.Shell(ctx, node) }),
		one("kill", "SIGKILL a whole node (a power loss)", func(ctx context.Context, l *lab.Lab, node string) error { return l.Kill(ctx, node) }),
		one("start", "Boot a killed node again (same disk)", func(ctx context.Context, l *lab.Lab, node string) error {
			t := time.Now()
			if err := l.Start(ctx, node); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "lab: node %s booted in %s\n", node, time.Since(t).Round(100*time.Millisecond))
			return nil
		}),
		one("partition", "Cut a node's network link", func(_ context.Context, l *lab.Lab, node string) error { return l.Partition(node) }),
		one("heal", "Restore a node's network link", func(_ context.Context, l *lab.Lab, node string) error { return l.Heal(node) }),
	)
	return root
}

// upBare brings up a bare lab and starts its server in the background
// (its log in the lab directory), recorded for lab down.
func upBare(cmd *cobra.Command, f *flags, l *lab.Lab, n int) error {
	if err := l.UpBare(cmd.Context(), n); err != nil {
		if !errors.Is(err, lab.ErrUp) {
			fmt.Fprintln(cmd.ErrOrStderr(), "lab: up failed; `lab down` removes what was made")
		}
		return err
	}
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(dir, lab.ServeLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	args := append(lab.ServerArgs(dir), "--prefix="+f.prefix, "--subnet="+f.subnet, "--dist="+f.dist, "--consul="+f.consul)
	srv := exec.Command(self, args...)
	srv.Stdout, srv.Stderr = log, log
	srv.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The server outlives this command: it must not keep what this
	// command inherited (a `flock LOCK bin/lab up --bare` lock would stay
	// held until `lab down`).
	closeInheritedOnExec()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start the lab server: %w", err)
	}
	if err := l.SetServer(srv.Process.Pid); err != nil {
		return err
	}
	_ = srv.Process.Release()
	sv := lab.ServedAt(f.subnet)
	if err := waitServing(cmd.Context(), sv.Base+"/consul/"+lab.ConsulSumsName()); err != nil {
		return fmt.Errorf("%w; see %s", err, filepath.Join(dir, lab.ServeLog))
	}
	if err := l.Status(cmd.Context(), cmd.OutOrStdout()); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), `
The nodes run sshd and Python only; %s serves them the repository,
Consul and a Debian mirror. Roll OpenSSI out with Ansible:
  bin/lab inventory -o lab.yml
  ansible-playbook -i lab.yml ansible/site.yml
  bin/lab exec 1 -- ssi nodes
  bin/lab add                          # a fresh node for ansible/add-node.yml
  bin/lab down                         # remove everything
`, sv.Base)
	return nil
}

// waitServing waits until url answers 200.
func waitServing(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the lab server does not answer at %s", url)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func exactNode(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one NODE (a number like 2 or a name like node2)", cmd.Name())
	}
	if _, err := strconv.Atoi(args[0]); err != nil && len(args[0]) < 5 {
		return fmt.Errorf("%s: %q is not a node: give a number like 2 or a name like node2", cmd.Name(), args[0])
	}
	return nil
}

// closeInheritedOnExec marks every descriptor above 2 close-on-exec (Go
// opens its own so; inherited ones are not).
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
