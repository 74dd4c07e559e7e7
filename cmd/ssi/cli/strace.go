package cli

import (
	"context"
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/straceargs"
)

// exitStraceNoProcess is the status of `ssi strace` for a cpid no
// process has: not 1 (ssi kill's), which is strace's own for a failure.
const exitStraceNoProcess = 4

func newStrace(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "strace CPID [STRACE-OPTION]...",
		Short: "Trace a process anywhere in the cluster with strace",
		Long: `Attach strace to the process CPID on whatever node it runs (also when
it was started from another node, or its origin node is DOWN) and stream
strace's output here, as ssi exec streams a program's: strace runs on that
node as you (the uid, gid and groups the kernel reports for ssi), in your
current directory (for -o FILE) with your environment. Ctrl-C (SIGINT),
SIGTERM, SIGHUP and SIGQUIT are passed on to strace, which detaches; the
process runs on.

STRACE-OPTIONs are passed to strace after its -p: options only, such as
-f, -e trace=%file, -s 256, -o FILE, -tt, at most 256 of them; write a
long option's value as --name=value. Refused: -p/--attach (ssi strace
traces CPID only), a command (use ssi exec), and the options that make
strace run one or only matter for one: -o |CMD and -o !CMD (strace would
pipe its output to CMD; for a file of that name write -o ./|CMD),
-u/--user and -E/--env. You may trace only your own processes (root any);
the kernel's ptrace rules on that node decide the rest (a setuid program,
Yama's ptrace_scope). strace must be installed on that node (package
strace).

Exit status:
  strace's own: 0 when the process exited or strace detached from it,
       1 when strace failed: the kernel refused the attach, or the
       process ended while strace attached to it
  128+N when signal N ended strace (Ctrl-C: 130, strace detached)
  2    a usage error (a bad CPID, or STRACE-OPTIONs refused)
  3    permission denied: you may trace only your own processes
  4    no such process
  125  the node refused to run strace (your user unknown there, too many
       programs of yours there)
  127  strace is not installed on the node the process runs on
  253  the node the process runs on, or that answers for its cpid, is
       DOWN or not a member
  254  vprocd is not running on this node (or you may not use its socket)
  255  that node or the connection to it was lost, or its vprocd cannot
       be reached`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("usage: ssi strace CPID [STRACE-OPTION...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n > 1 {
				return usageError{errors.New("usage: ssi strace CPID [STRACE-OPTION...]: strace runs no command")}
			}
			x, err := cpid.Parse(args[0])
			if err != nil {
				return usageError{err}
			}
			opts := args[1:]
			if err := straceargs.Check(opts); err != nil {
				return usageError{errors.New(strings.TrimPrefix(err.Error(), "straceargs: "))}
			}
			c := vproc.Cmd{Stdin: strings.NewReader(""), Stdout: g.out, Stderr: g.errOut}
			return g.exec(cmd.Context(), "strace", exitStraceNoProcess, c, func(ctx context.Context, c vproc.Cmd) (*vproc.Process, error) {
				cl, err := g.newExecClient(ctx)
				if err != nil {
					return nil, err
				}
				return cl.Strace(ctx, int64(x), opts, c)
			})
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}
