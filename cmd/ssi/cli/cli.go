// Package cli implements the ssi commands. Every command talks to the local
// daemons through the client libraries (client/...) only.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/internal/version"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

type globals struct {
	runDir string
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	// execClient is the vprocd client of an exec, closed when it ends.
	execClient *vproc.Client
	// signals, when set, has caught the signals an exec passes on since
	// before it started (package early).
	signals chan os.Signal
}

func (g *globals) socket(daemon string) string { return filepath.Join(g.runDir, daemon+".sock") }

func (g *globals) cluster(ctx context.Context) (*cluster.Client, error) {
	return cluster.New(ctx, cluster.WithSocket(g.socket("clmsd")))
}

// usageError marks errors in how ssi was called (exit 2).
type usageError struct{ error }

// Main runs ssi with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{in: os.Stdin, out: stdout, errOut: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ce cmdExit
	if errors.As(err, &ce) {
		return ce.code
	}
	fmt.Fprintln(stderr, "ssi: "+err.Error())
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

func newRoot(g *globals) *cobra.Command {
	defRunDir := os.Getenv("OPENSSI_CLUSTER_RUN_DIR")
	if defRunDir == "" {
		defRunDir = "/run/openssi"
	}
	root := &cobra.Command{
		Use:   "ssi",
		Short: "Administer and use an OpenSSI cluster",
		Long: `ssi is the command line of OpenSSI, which makes several Linux machines
behave as one. It talks to the OpenSSI daemons of the node it runs on
through their sockets in the run directory.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.runDir, "run-dir", defRunDir, "directory holding the daemons' sockets (env OPENSSI_CLUSTER_RUN_DIR)")
	root.AddCommand(newNodes(g), newStatus(g), newEvents(g), newNode(g), newLock(g), newLocks(g), newLockspace(g), newExec(g), newKill(g), newRenice(g), newMigrate(g), newConsul(g), newVersion(g))
	root.AddCommand(newLoadLevel(g))
	root.AddCommand(newInit(g), newService(g))
	root.AddCommand(newIsolate(g), newKeepalive(g), newVip(g))
	root.AddCommand(newPs(g), newTop(g), newStrace(g))
	return root
}

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of ssi",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(g.out, version.String("ssi"))
			return nil
		},
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q (see `%s --help`)", cmd.CommandPath(), args[0], cmd.CommandPath())}
	}
	return nil
}
