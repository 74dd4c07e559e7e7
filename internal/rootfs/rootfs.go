// Package rootfs provides the minimal Debian bookworm root filesystem that
// the package install test, the boot test and the lab's nspawn containers
// start from. It is made once with debootstrap and cached: Ensure builds it
// in a temporary directory beside the cache entry and renames it into place
// only when debootstrap succeeded, so a crash half way leaves no broken
// cache behind. Callers never change the cached tree: they work on a copy
// made with Clone.
package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Suite is the Debian release of the image.
const Suite = "bookworm"

// DefaultMirror is the Debian archive debootstrap reads from unless
// OPENSSI_DEBIAN_MIRROR says otherwise.
const DefaultMirror = "http://deb.debian.org/debian"

// Packages are what the image needs beyond debootstrap's minbase variant,
// each for a reason:
//
//   - systemd, systemd-sysv: a real init for `systemd-nspawn --boot`, and
//     the units under test;
//   - dbus: systemctl and logind talk over the system bus;
//   - iproute2: addresses and links in the lab's network namespaces;
//   - ca-certificates, gnupg: apt verifying the signed local repository
//     (gpgv comes with apt; gnupg lets tests inspect keys);
//   - openssh-server (with its openssh-client): the peer bench/vproc
//     measures `ssi exec` against; finish disables it, so no node runs
//     sshd unless a bench starts it;
//   - strace: a Recommends of the openssi package (`ssi strace`), which
//     the nodes install without Recommends;
//   - pacemaker, pacemaker-cli-utils (cibadmin, crm_mon; a Recommends)
//     and corosync: the peer bench/failover measures initfailover's
//     failover against; finish disables them (and cluster-glue's ha_logd,
//     which pacemaker's resource agents pull in), as sshd;
//   - libprotobuf-c1, libnet1, libnl-3-200: the libraries of the CRIU
//     that `lab up --criu` copies in (built by `make criu`), which
//     vprocd's migration uses;
//   - haproxy and keepalived: the peers bench/lvs measures lvsd's proxy
//     (requests/s, p99) and its VIP failover (against VRRP) against;
//     finish disables them, as sshd;
//   - sshfs and fio: bench/cfs measures cfsd's mount against sshfs (over
//     the nodes' sshd) with fio's sequential reads and writes.
var Packages = []string{"systemd", "systemd-sysv", "dbus", "iproute2", "ca-certificates", "gnupg", "openssh-server", "strace", "pacemaker", "pacemaker-cli-utils", "corosync", "haproxy", "keepalived", "libprotobuf-c1", "libnet1", "libnl-3-200", "sshfs", "fio"}

// ErrMissingTool is matched (errors.Is) when debootstrap is not installed.
var ErrMissingTool = errors.New("rootfs: debootstrap not found (apt-get install debootstrap)")

// Key names the cache entry of the current Suite and Packages: a change of
// either makes a new image instead of reusing a stale one.
func Key() string {
	h := sha256.Sum256([]byte(Suite + "\n" + strings.Join(Packages, ",")))
	return Suite + "-" + hex.EncodeToString(h[:])[:12]
}

// Ensure returns the path of the cached image under cacheDir, building it
// first when it does not exist yet (about a minute; debootstrap's output
// goes to log, which may be nil). Concurrent callers are serialised by a
// lock file in cacheDir.
func Ensure(cacheDir string, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	final := filepath.Join(cacheDir, Key())
	if ok, err := complete(final); err != nil || ok {
		return final, err
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", ErrMissingTool
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("rootfs: lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("rootfs: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if ok, err := complete(final); err != nil || ok {
		return final, err // made by another caller while we waited
	}
	// Leftovers of a crashed build.
	if old, _ := filepath.Glob(filepath.Join(cacheDir, ".tmp-*")); len(old) > 0 {
		for _, o := range old {
			_ = os.RemoveAll(o)
		}
	}
	tmp, err := os.MkdirTemp(cacheDir, ".tmp-"+Key()+"-")
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	defer os.RemoveAll(tmp)
	// MkdirTemp makes 0700: the image's / must be traversable by the
	// container's system users (messagebus, ...).
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	mirror := os.Getenv("OPENSSI_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = DefaultMirror
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(Packages, ","), Suite, tmp, mirror)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("rootfs: debootstrap %s from %s: %w", Suite, mirror, err)
	}
	if err := finish(tmp); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, stamp), []byte(Key()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	return final, nil
}

// stamp marks a finished image; it is written last, just before the rename.
const stamp = ".openssi-rootfs"

func complete(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, stamp))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		// A directory without the stamp is not ours to trust.
		if _, derr := os.Stat(dir); derr == nil {
			if rerr := os.RemoveAll(dir); rerr != nil {
				return false, fmt.Errorf("rootfs: remove incomplete %s: %w", dir, rerr)
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("rootfs: %w", err)
}

// finish adjusts the fresh image for containers: an empty machine-id
// (systemd makes one per boot), a root login that needs no password on
// the console, a hostname, no apt lists or caches, and sshd, corosync,
// pacemaker, haproxy and keepalived installed but not enabled (a bench
// starts them where it wants them).
func finish(dir string) error {
	files := map[string]string{
		"etc/machine-id":                    "",
		"etc/hostname":                      "openssi\n",
		"etc/apt/sources.list":              "",
		"etc/securetty":                     "",
		"etc/apt/apt.conf.d/99openssi-test": "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	for _, unit := range disabledUnits {
		if err := os.Remove(filepath.Join(dir, unit)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rootfs: disable %s: %w", filepath.Base(unit), err)
		}
	}
	for _, glob := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"} {
		m, _ := filepath.Glob(filepath.Join(dir, glob))
		for _, f := range m {
			_ = os.Remove(f)
		}
	}
	return nil
}

// disabledUnits are the links by which the postinsts of openssh-server,
// corosync, pacemaker, cluster-glue, haproxy and keepalived enable their
// daemons at boot (wanted by multi-user.target, and sshd's alias).
var disabledUnits = []string{
	"etc/systemd/system/multi-user.target.wants/ssh.service",
	"etc/systemd/system/sshd.service",
	"etc/systemd/system/sockets.target.wants/ssh.socket",
	"etc/systemd/system/multi-user.target.wants/corosync.service",
	"etc/systemd/system/multi-user.target.wants/pacemaker.service",
	"etc/systemd/system/multi-user.target.wants/logd.service",
	"etc/systemd/system/multi-user.target.wants/haproxy.service",
	"etc/systemd/system/multi-user.target.wants/keepalived.service",
}

// Clone copies the image at src to the new directory dst (which must not
// exist), preserving owners, modes, links and extended attributes, with
// reflinks where the filesystem has them.
func Clone(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("rootfs: clone: %s exists", dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("rootfs: clone: %w", err)
	}
	out, err := exec.Command("cp", "-a", "--reflink=auto", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rootfs: clone %s: %v: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}
