package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/cmd/ssi/psview"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

// exitPartial is the status of ps and top when a node gave no table (the
// others' processes are still shown).
const exitPartial = 1

// psFlags are the filters ps and top share.
type psFlags struct {
	nodes   []uint
	users   []string
	cpids   []string
	timeout time.Duration
}

func (p *psFlags) add(f *pflag.FlagSet) {
	f.UintSliceVarP(&p.nodes, "node", "n", nil, "only the processes of NODE (repeatable)")
	f.StringArrayVarP(&p.users, "user", "u", nil, "only the processes of USER, a name or a uid (repeatable)")
	f.StringArrayVarP(&p.cpids, "pid", "p", nil, "only the process CPID (repeatable)")
	f.DurationVar(&p.timeout, "timeout", 2*time.Second, "how long to wait for each node")
}

// filter resolves the flags into a filter for vproc.Ps.
func (p *psFlags) filter() (vproc.PsFilter, error) {
	f := vproc.PsFilter{Timeout: p.timeout}
	if p.timeout <= 0 {
		return f, fmt.Errorf("--timeout %v: want a positive duration", p.timeout)
	}
	for _, n := range p.nodes {
		if n < 1 || n > cpid.MaxNode {
			return f, fmt.Errorf("-n %d: want a node number 1..%d", n, cpid.MaxNode)
		}
		f.Nodes = append(f.Nodes, uint32(n))
	}
	for _, u := range p.users {
		uid, err := lookupUID(u)
		if err != nil {
			return f, err
		}
		f.UIDs = append(f.UIDs, uid)
	}
	for _, s := range p.cpids {
		for _, one := range strings.Split(s, ",") {
			c, err := cpid.Parse(one)
			if err != nil {
				return f, fmt.Errorf("-p: %w", err)
			}
			f.CPIDs = append(f.CPIDs, c)
		}
	}
	return f, nil
}

// lookupUID reads a user name or a uid (uids are the same on every node).
func lookupUID(s string) (uint32, error) {
	if v, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(v), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("-u %q: no such user", s)
	}
	v, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("-u %q: uid %q is not a number", s, u.Uid)
	}
	return uint32(v), nil
}

// psClient connects to vprocd, or fails with exitNoVprocd and one line.
func (g *globals) psClient(ctx context.Context, name string) (*vproc.Client, error) {
	cl, err := vproc.New(ctx, vproc.WithSocket(g.socket("vprocd")))
	if err != nil {
		fmt.Fprintln(g.errOut, "ssi "+name+": "+oneLine(err.Error()))
		return nil, cmdExit{exitNoVprocd}
	}
	return cl, nil
}

// reportFailures writes one line per node that gave no table.
func (g *globals) reportFailures(name string, fs []vproc.NodeFailure) {
	for _, f := range fs {
		fmt.Fprintln(g.errOut, "ssi "+name+": "+oneLine(f.Reason))
	}
}

func newPs(g *globals) *cobra.Command {
	var (
		flags  psFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "ps [-n NODE]... [-u USER]... [-p CPID]... [-o table|json|migrate]",
		Short: "List the processes of every node of the cluster",
		Long: `List the processes of every UP node of the cluster (or of each -n NODE),
asked in parallel: cluster PID, the node it runs on, user, parent, ps's
STAT letters, %CPU over its life, resident memory in KiB, start, CPU time
and command line. -u and -p select users and cluster PIDs; the filters of
different kinds must all match. Everyone sees every process and its command
line, as in /proc; environments are never shown (the owner and root read
them in /cluster/proc/CPID/environ). -o json prints the rows as JSON.
-o migrate lists the programs started migratable (ssi exec --migratable)
and how each would move with ssi migrate: coop (it speaks the checkpoint
protocol), criu (CRIU dumps and restores it), or no and why not.

A node that does not answer within --timeout (or that -n names and is
DOWN) is named on stderr, one line each, and the others are still shown.

Exit status:
  0    every node asked answered
  1    a node gave no table (named on stderr)
  2    a usage error
  254  vprocd is not running on this node`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" && output != "migrate" {
				return usageError{fmt.Errorf("-o %q is not valid: want table, json or migrate", output)}
			}
			f, err := flags.filter()
			if err != nil {
				return usageError{err}
			}
			cl, err := g.psClient(cmd.Context(), "ps")
			if err != nil {
				return err
			}
			defer cl.Close()
			t, err := cl.Ps(cmd.Context(), f)
			if err != nil {
				return psError("ps", err)
			}
			rows := t.Rows()
			switch output {
			case "json":
				err = psview.JSON(g.out, rows, nil)
			case "migrate":
				err = psview.MigrateTable(g.out, rows, psview.Options{})
			default:
				err = psview.Table(g.out, rows, psview.Options{Now: time.Now()})
			}
			if err != nil {
				return err
			}
			g.reportFailures("ps", t.Failures)
			if len(t.Failures) > 0 {
				return cmdExit{exitPartial}
			}
			return nil
		},
	}
	flags.add(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or migrate")
	return cmd
}

// psError is the error of a Ps call that got no table at all.
func psError(name string, err error) error {
	if errors.Is(err, vproc.ErrNotRunning) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return err
}

func newTop(g *globals) *cobra.Command {
	var (
		flags      psFlags
		delay      time.Duration
		iterations int
		batch      bool
	)
	cmd := &cobra.Command{
		Use:   "top [-d DELAY] [-b] [--iterations N] [-n NODE]... [-u USER]... [-p CPID]...",
		Short: "Show the cluster's busiest processes, refreshed",
		Long: `Show the processes of every UP node sorted by CPU use, refreshed every
DELAY (-d, default 1s), with a load line per node (load average, runnable
tasks, CPUs, free memory). %CPU is what each process used since the last
refresh, measured by its node's own clock, as top computes it (the first
frame shows the average over each process's life). -b writes frames one
after the other instead of redrawing the terminal; --iterations stops
after N frames. The filters are those of ssi ps. A node that does not
answer in time shows "-" in its load line and is named on stderr.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if delay <= 0 {
				return usageError{fmt.Errorf("-d %v: want a positive duration", delay)}
			}
			f, err := flags.filter()
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			cl, err := g.psClient(ctx, "top")
			if err != nil {
				return err
			}
			defer cl.Close()
			return g.top(ctx, cl, f, delay, iterations, batch)
		},
	}
	flags.add(cmd.Flags())
	cmd.Flags().DurationVarP(&delay, "delay", "d", time.Second, "time between refreshes")
	cmd.Flags().IntVar(&iterations, "iterations", 0, "stop after N frames (0: until interrupted)")
	cmd.Flags().BoolVarP(&batch, "batch", "b", false, "write frames one after another, without clearing the terminal")
	return cmd
}

// top draws frames until ctx ends or iterations are done.
func (g *globals) top(ctx context.Context, cl *vproc.Client, f vproc.PsFilter, delay time.Duration, iterations int, batch bool) error {
	prev := map[uint32]proctable.Snapshot{}
	t := time.NewTicker(delay)
	defer t.Stop()
	for frame := 1; ; frame++ {
		tab, err := cl.Ps(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return psError("top", err)
		}
		rows, loads := topFrame(prev, tab)
		o := psview.Options{Now: time.Now()}
		if !batch {
			if h, w, ok := termSize(); ok {
				o.Width = int(w)
				o.MaxRows = max(int(h)-5-len(loads), 1)
			}
			fmt.Fprint(g.out, psview.ClearScreen)
		}
		if err := psview.Top(g.out, loads, rows, o); err != nil {
			return err
		}
		if batch {
			fmt.Fprintln(g.out)
		}
		g.reportFailures("top", tab.Failures)
		if iterations > 0 && frame >= iterations {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// topFrame computes a frame's rows and load lines from a table and the
// previous snapshot of each node, which it replaces. %CPU is TopCPU's
// between two snapshots of one boot of a node, over that node's uptime.
func topFrame(prev map[uint32]proctable.Snapshot, tab *vproc.Table) ([]proctable.Row, []psview.NodeLoad) {
	var rows []proctable.Row
	var loads []psview.NodeLoad
	seen := map[uint32]bool{}
	for _, n := range tab.Nodes {
		cur := n.Rows
		if p, ok := prev[n.Node]; ok && p.Boot.Equal(n.Boot) {
			cur = proctable.TopCPU(p.Rows, n.Rows, n.Uptime-p.Uptime)
		}
		prev[n.Node] = n.Snapshot
		seen[n.Node] = true
		rows = append(rows, cur...)
		l := psview.NodeLoad{Node: n.Node}
		if n.Load != nil {
			l = psview.NodeLoad{Node: n.Node, Known: true, RunQueue: uint32(n.Load.RunQueue), Load1: n.Load.Load1, CPUs: uint32(n.Load.CPUs), FreeMem: n.Load.FreeMem}
		}
		loads = append(loads, l)
	}
	for _, f := range tab.Failures {
		loads = append(loads, psview.NodeLoad{Node: f.Node})
	}
	for n := range prev {
		if !seen[n] {
			delete(prev, n)
		}
	}
	proctable.SortByCPID(rows)
	slices.SortFunc(loads, func(a, b psview.NodeLoad) int { return cmp.Compare(a.Node, b.Node) })
	return rows, loads
}
