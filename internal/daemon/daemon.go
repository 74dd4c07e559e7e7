// Package daemon is the start-up and shutdown every OpenSSI daemon shares,
// so they all behave the same under systemd: flags and config (exit 2 and
// one line on a bad value), logging, signals (SIGTERM drains, SIGHUP
// reloads the log level), sd_notify and the health-gated watchdog, the
// Consul client, the inter-node TLS source and the local API socket.
//
// A daemon's main is a few lines:
//
//	func main() { os.Exit(daemon.Main(clmsdspec.Daemon, os.Args[1:], run)) }
//
// and run wires the daemon's own packages using the Env it is given. The
// description (internal/describe) gives the flags, the --help text and the
// daemon's section of the configuration; the file may hold every
// registered daemon's section (internal/daemons), and all are validated.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/lifecycle"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/logging"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/version"
)

// Exit codes of a daemon.
const (
	ExitOK     = 0
	ExitError  = 1 // a runtime failure
	ExitConfig = 2 // bad flags or configuration
)

// Env is what a daemon's run function starts with.
type Env struct {
	// Name is the daemon's name ("clmsd").
	Name string
	// Daemon is the daemon's description.
	Daemon describe.Daemon
	// Config is the validated configuration: the shared cluster section
	// and every daemon's (the daemon's own package reads its own).
	Config *config.Config
	// Log is the daemon's logger (level follows cluster.log_level, also on
	// SIGHUP).
	Log *logrus.Logger
	// Notify talks to systemd (no-op outside systemd).
	Notify *lifecycle.Notifier
	// Watchdog must be fed (Beat) from the loop that does the work.
	Watchdog *lifecycle.Watchdog

	loadOpts config.LoadOptions
	// goroutines counts every goroutine Env starts (the reload loop, the
	// watchdog, the gRPC servers); Main waits for all of them. The
	// servers' Stop waits for their handlers (grpc.WaitForHandlers).
	goroutines sync.WaitGroup
	// bg ends when run has returned (Go's goroutines end with it).
	bg        context.Context
	serversMu sync.Mutex
	servers   []*grpc.Server
}

// Go runs f in a goroutine of the daemon's own (a prober, a watch) and
// returns a function that waits for it to return. f must return once its
// ctx ends; that ctx also ends when run returns, and Main waits for f, so
// unlike a bare go statement it cannot outlive the daemon.
func (e *Env) Go(ctx context.Context, f func(ctx context.Context)) (wait func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := func() bool { return false }
	if e.bg != nil {
		stop = context.AfterFunc(e.bg, cancel)
	}
	done := make(chan struct{})
	e.goJoined(func() {
		defer close(done)
		defer stop()
		defer cancel()
		f(ctx)
	})
	return func() { <-done }
}

// goJoined runs f in a goroutine that Main waits for before it returns.
func (e *Env) goJoined(f func()) {
	e.goroutines.Add(1)
	go func() {
		defer e.goroutines.Done()
		f()
	}()
}

// serve serves s on ln in a goroutine Main joins, and returns a channel
// closed when Serve returns (after s is stopped); a server the daemon did
// not stop itself is stopped when run returns.
func (e *Env) serve(s *grpc.Server, ln net.Listener) <-chan struct{} {
	e.serversMu.Lock()
	e.servers = append(e.servers, s)
	e.serversMu.Unlock()
	served := make(chan struct{})
	e.goJoined(func() {
		defer close(served)
		_ = s.Serve(ln)
	})
	return served
}

// join stops what run left serving, ends the background goroutines and
// waits for every goroutine Env started.
func (e *Env) join(cancel context.CancelFunc) {
	e.serversMu.Lock()
	for _, s := range e.servers {
		s.Stop()
	}
	e.serversMu.Unlock()
	cancel()
	e.goroutines.Wait()
}

// ConfigError marks an error that should end the daemon with ExitConfig.
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

// Main parses args, loads the configuration, sets up logging and signals
// and calls run with a context that ends on SIGTERM/SIGINT. It returns the
// process exit code: 0, ExitConfig for bad flags or configuration (one
// line on stderr naming the key, the value and what is allowed), ExitError
// when run fails (one line: "<name>: <error>").
func Main(d describe.Daemon, args []string, run func(ctx context.Context, env *Env) error) int {
	return main(d, daemons.Sections(), args, os.Stdout, os.Stderr, run)
}

func main(d describe.Daemon, sections []config.Section, args []string, stdout, stderr io.Writer, run func(ctx context.Context, env *Env) error) int {
	name := d.Name
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bindings := config.AddFlags(fs, &d.Config)
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkConfig := fs.Bool("check-config", false, "load and validate the configuration, then exit: 0 when valid, 2 otherwise")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v (see `%s --help`)\n", name, err, name)
		return ExitConfig
	}
	if *help {
		fmt.Fprintf(stdout, "Usage: %s [flags]\n\n%s\n\nFlags:\n%s\nSettings come from %s (see openssi.yaml(5)), then OPENSSI_* environment\nvariables (OPENSSI_CLMSD_NODE_NUMBER for clmsd.node_number), then flags.\nExit codes: 0 ok, 1 runtime failure, 2 bad configuration.\n",
			name, d.About, fs.FlagUsages(), config.DefaultPath)
		return ExitOK
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String(name))
		return ExitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see `%s --help`)\n", name, fs.Arg(0), name)
		return ExitConfig
	}
	opts := config.LoadOptions{Flags: fs, Bindings: bindings, Sections: sections}
	cfg, err := config.Load(opts)
	if err != nil {
		fmt.Fprintln(stderr, oneLine(err.Error()))
		return ExitConfig
	}
	log, err := logging.New(cfg.Cluster.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, oneLine(err.Error()))
		return ExitConfig
	}
	if *checkConfig {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", name)
		return ExitOK
	}
	log.SetOutput(stderr)
	notify := lifecycle.NewNotifier()
	wd, err := lifecycle.NewWatchdog(notify)
	if err != nil {
		log.WithError(err).Warn("watchdog disabled")
		wd = lifecycle.NewWatchdogInterval(0, notify)
	}
	wd.Stalled = func(age time.Duration) {
		log.WithField("last_beat", age.String()+" ago").Warn("work loop stalled: withholding the systemd watchdog ping")
	}
	env := &Env{Name: name, Daemon: d, Config: cfg, Log: log, Notify: notify, Watchdog: wd, loadOpts: opts}

	ctx, stop, reload := lifecycle.Signals(context.Background())
	defer stop()
	bg, stopBg := context.WithCancel(ctx)
	env.bg = bg
	env.goJoined(func() { env.reloadLoop(bg, reload) })
	env.goJoined(func() { wd.Run(bg) })
	log.WithField("version", version.Get()).Infof("%s starting", name)
	err = run(ctx, env)
	env.join(stopBg)
	_ = notify.Stopping()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Stopped while still starting (waiting for Consul, say): a stop,
		// not a failure, or systemd would mark the unit failed.
		log.WithError(err).Info("stopped before it was ready")
		err = nil
	}
	if err != nil {
		var ce ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, oneLine(ce.Error()))
			return ExitConfig
		}
		log.WithError(err).Error("exiting")
		fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err.Error()))
		return ExitError
	}
	log.Infof("%s stopped", name)
	return ExitOK
}

// reloadLoop re-reads the configuration on SIGHUP and applies what can
// change at run time (the log level); other changes need a restart, which
// is logged.
func (e *Env) reloadLoop(ctx context.Context, reload <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		}
		_ = e.Notify.Reloading()
		cfg, err := config.Load(e.loadOpts)
		if err != nil {
			e.Log.WithError(err).Error("reload: configuration not applied")
		} else if err := logging.SetLevel(e.Log, cfg.Cluster.LogLevel); err != nil {
			e.Log.WithError(err).Error("reload: log level not applied")
		} else {
			e.Log.WithField("log_level", cfg.Cluster.LogLevel).Info("reloaded configuration (settings other than the log level apply on restart)")
		}
		_ = e.Notify.Ready()
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// Consul returns a client of the local Consul agent from cluster.consul,
// with the ACL token of the systemd credential consul.token when the unit
// hands over a non-empty one (consul.ResolveToken), and logs where the
// token came from.
func (e *Env) Consul() (*api.Client, error) {
	o := e.consulOptions(os.Getenv("CREDENTIALS_DIRECTORY"))
	tok, err := consul.ResolveToken(o)
	if err != nil {
		return nil, ConfigError{fmt.Errorf("config: cluster.consul: %w", err)}
	}
	e.Log.Info(tokenMessage(tok))
	client, err := consul.NewClient(o)
	if err != nil {
		return nil, ConfigError{fmt.Errorf("config: cluster.consul: %w", err)}
	}
	return client, nil
}

func (e *Env) consulOptions(credentialsDir string) consul.Options {
	c := e.Config.Cluster.Consul
	return consul.Options{
		Address: c.Address, Scheme: c.Scheme, Token: c.Token, TokenFile: c.TokenFile, CredentialsDir: credentialsDir,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, TLSServerName: c.TLSServerName,
	}
}

// tokenMessage says where the Consul ACL token comes from, never the token.
func tokenMessage(t consul.Token) string {
	var m string
	switch t.Source {
	case consul.FromCredential:
		return "Consul ACL token from the systemd credential " + consul.TokenCredential
	case consul.FromTokenFile:
		m = "Consul ACL token from cluster.consul.token_file"
	case consul.FromToken:
		m = "Consul ACL token from cluster.consul.token"
	default:
		m = "no Consul ACL token set: CONSUL_HTTP_TOKEN or the agent's default token applies"
	}
	if t.EmptyCredential {
		m += " (the credential " + consul.TokenCredential + " is empty: no token file on this node)"
	}
	return m
}

// TLS returns the inter-node certificate source of cluster.tls: Consul's
// built-in CA through the agent (source: connect, waits until the agent
// hands out a leaf certificate) or PEM files (source: files).
func (e *Env) TLS(ctx context.Context, client *api.Client) (rpc.Source, error) {
	t := e.Config.Cluster.TLS
	switch t.Source {
	case "files":
		src, err := rpc.NewFileSource(rpc.FileConfig{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile, Log: e.Log})
		if err != nil {
			return nil, ConfigError{fmt.Errorf("config: cluster.tls: %w", err)}
		}
		return src, nil
	default:
		src, err := rpc.NewConnectSource(ctx, client, rpc.ServiceName(e.Name), e.Log)
		if err != nil {
			return nil, fmt.Errorf("inter-node TLS from Consul's CA (is Connect enabled on the servers?): %w", err)
		}
		return src, nil
	}
}

// SocketPath returns the daemon's local API socket path.
func (e *Env) SocketPath() string { return filepath.Join(e.Config.Cluster.RunDir, e.Name+".sock") }

// ListenLocal opens the daemon's local API socket (mode 0660, group
// cluster.socket_group).
func (e *Env) ListenLocal() (net.Listener, error) {
	ln, grouped, err := localapi.Listen(e.SocketPath(), e.Config.Cluster.SocketGroup)
	if err != nil {
		return nil, err
	}
	if !grouped && e.Config.Cluster.SocketGroup != "" {
		e.Log.WithField("group", e.Config.Cluster.SocketGroup).Warn("socket group does not exist: the local API socket is root-only")
	}
	return ln, nil
}
