// Package labssh sets up OpenSSH between two lab nodes, for the benches
// that measure OpenSSI against an ssh-based peer (bench/vproc: ssh;
// bench/cfs: sshfs).
package labssh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/openssi/openssi/lab"
)

// Setup makes a key pair for root in the node client, authorises it on
// the node server, records server's host key in client's known_hosts
// (under the server's name and address), writes sshdConf as a drop-in of
// server's sshd and starts it (the image has it disabled), then checks
// that client reaches server with `ssh server true`.
func Setup(ctx context.Context, l *lab.Lab, client, server, sshdConf string) error {
	s := l.State()
	cn, err := s.Node(client)
	if err != nil {
		return err
	}
	sn, err := s.Node(server)
	if err != nil {
		return err
	}
	if out, err := l.Exec(ctx, client, "sh", "-c", "mkdir -p -m 700 /root/.ssh && rm -f /root/.ssh/id_ed25519* && ssh-keygen -q -t ed25519 -N '' -C openssi-bench -f /root/.ssh/id_ed25519"); err != nil {
		return fmt.Errorf("ssh-keygen in %s: %v: %s", client, err, out)
	}
	pub, err := os.ReadFile(filepath.Join(cn.Root(), "root/.ssh/id_ed25519.pub"))
	if err != nil {
		return err
	}
	hostKey, err := os.ReadFile(filepath.Join(sn.Root(), "etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		return err
	}
	f := strings.Fields(string(hostKey))
	if len(f) < 2 {
		return fmt.Errorf("%s's host key: %q", server, hostKey)
	}
	for _, w := range []struct {
		root, rel, content string
	}{
		{sn.Root(), "root/.ssh/authorized_keys", string(pub)},
		{cn.Root(), "root/.ssh/known_hosts", fmt.Sprintf("%s,%s %s %s\n", server, sn.IP, f[0], f[1])},
		{sn.Root(), "etc/ssh/sshd_config.d/openssi-bench.conf", sshdConf},
	} {
		p := filepath.Join(w.root, w.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(w.content), 0o600); err != nil {
			return err
		}
	}
	if out, err := l.Exec(ctx, server, "systemctl", "start", "ssh.service"); err != nil {
		return fmt.Errorf("start sshd on %s: %v: %s", server, err, out)
	}
	if out, err := l.Exec(ctx, client, "ssh", "-o", "BatchMode=yes", server, "true"); err != nil {
		return fmt.Errorf("ssh %s -> %s: %v: %s", client, server, err, out)
	}
	return nil
}
