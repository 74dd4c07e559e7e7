package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"os/user"
	"strconv"
	"time"

	"github.com/openssi/openssi/daemons/keepalived/decl"
)

// checkUnit is the transient unit an exec: check of application name
// runs in.
func checkUnit(name string) string { return "openssi-keepalive-" + name + "-check.service" }

// runCheck runs one check of application name, within timeout: nil
// passes.
func runCheck(ctx context.Context, units Units, name string, c decl.Check, u *user.User, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch c.Kind {
	case decl.TCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.Target)
		if err != nil {
			return fmt.Errorf("tcp check %s: %w", c.Target, err)
		}
		return conn.Close()
	case decl.HTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Target, nil)
		if err != nil {
			return fmt.Errorf("http check %s: %w", c.Target, err)
		}
		cl := &http.Client{
			// A local check of the application, not of its certificate.
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := cl.Do(req)
		if err != nil {
			return fmt.Errorf("http check %s: %w", c.Target, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("http check %s: status %d", c.Target, resp.StatusCode)
		}
		return nil
	case decl.Exec:
		// A oneshot unit of its own: the check runs as the application
		// does (its user, no sandbox of this daemon's).
		spec := Spec{Argv: []string{"/bin/sh", "-c", c.Target}, User: u.Username, Description: "OpenSSI keepalive check of " + name, StopTimeout: time.Second}
		if err := units.Run(ctx, checkUnit(name), spec); err != nil {
			return fmt.Errorf("exec check %q: %w", c.Target, err)
		}
		return nil
	}
	return fmt.Errorf("check kind %d", c.Kind)
}

// lookupUser finds an application's user on this node: a name or a
// numeric uid.
func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
			if u, err2 := user.LookupId(name); err2 == nil {
				return u, nil
			}
		}
		return nil, fmt.Errorf("user %s does not exist on this node", name)
	}
	return u, nil
}

// resolve finds an application's program on this node: an absolute
// path as given, else through PATH (systemd wants an absolute one).
func resolve(argv []string) ([]string, error) {
	p, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("program %s: not found or not executable on this node", argv[0])
	}
	out := append([]string{p}, argv[1:]...)
	return out, nil
}
