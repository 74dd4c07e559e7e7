package nspawn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/rootfs"
	"github.com/openssi/openssi/internal/roottest"
)

// image returns a throwaway copy of the cached rootfs.
func image(t *testing.T) string {
	t.Helper()
	roottest.Need(t, "systemd-nspawn", "debootstrap")
	cache := os.Getenv("OPENSSI_ROOTFS_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "openssi", "rootfs")
	}
	src, err := rootfs.Ensure(cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "root")
	if err := rootfs.Clone(src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestBootExecKill(t *testing.T) {
	dir := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host := filepath.Join(t.TempDir(), "shared")
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Boot(ctx, Options{Dir: dir, Name: "nspawn-test-kill", PrivateNetwork: true,
		Binds: []Bind{{Host: host, Container: "/mnt/shared", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	if state, err := c.WaitSystemRunning(ctx); err != nil {
		t.Fatalf("boot: %s: %v", state, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hostname"}, "nspawn-test-kill"},
		{[]string{"cat", "/mnt/shared/hello"}, "hi"},
		{[]string{"ps", "-o", "pid=", "-p", "1"}, "1"},
		{[]string{"cat", "/proc/1/comm"}, "systemd"},
	} {
		out, err := c.Exec(ctx, tc.args...)
		if err != nil && tc.args[0] != "ps" {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if err == nil && strings.TrimSpace(out) != tc.want {
			t.Errorf("%v = %q, want %q", tc.args, out, tc.want)
		}
	}
	// Only loopback with a private network.
	links, _ := c.Exec(ctx, "ls", "/sys/class/net")
	if strings.TrimSpace(links) != "lo" {
		t.Errorf("private network has links %q, want only lo", links)
	}
	if _, err := c.Exec(ctx, "false"); err == nil {
		t.Error("Exec of false returned no error")
	}
	pid := c.PID()
	c.Kill()
	select {
	case <-c.Done():
	default:
		t.Fatal("Kill returned before systemd-nspawn ended")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("container init %d still alive after Kill", pid)
	}
	if _, err := c.Exec(ctx, "true"); err == nil {
		t.Fatal("Exec after Kill succeeded")
	}

	// The same tree boots again (Kill left nothing behind), and Stop
	// powers it off cleanly.
	c2, err := Boot(ctx, Options{Dir: dir, Name: "nspawn-test-kill", PrivateNetwork: true})
	if err != nil {
		t.Fatalf("second boot: %v", err)
	}
	defer c2.Kill()
	if state, err := c2.WaitSystemRunning(ctx); err != nil {
		t.Fatalf("second boot: %s: %v", state, err)
	}
	stopCtx, stopCancel := context.WithTimeout(ctx, 60*time.Second)
	defer stopCancel()
	if err := c2.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	dir := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := Run(ctx, Options{Dir: dir, PrivateNetwork: true}, "sh", "-c", "test ! -d /run/systemd/system && echo offline")
	if err != nil || strings.TrimSpace(string(out)) != "offline" {
		t.Fatalf("Run = %q, %v; want offline (no systemd running)", out, err)
	}
	if _, err := Run(ctx, Options{Dir: dir}, "false"); err == nil {
		t.Fatal("Run of false returned no error")
	}
}

func TestArgsHostname(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string // "" = no --hostname
	}{
		{Options{Dir: "/r", Name: "lab-node1"}, ""},
		{Options{Dir: "/r", Name: "lab-node1", Hostname: "node1"}, "--hostname=node1"},
	} {
		var got string
		for _, a := range c.o.args(true) {
			if strings.HasPrefix(a, "--hostname") {
				got = a
			}
		}
		if got != c.want {
			t.Errorf("%+v: hostname argument %q, want %q", c.o, got, c.want)
		}
	}
}
