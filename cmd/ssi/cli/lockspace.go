package cli

import (
	"context"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/dlm"
)

func newLockspace(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lockspace",
		Short: "Create, change, delete and list lockspaces",
		Long: `A lockspace has an owner, a group and a mode, as a file: the caller's class
is owner, else group (its gid or a supplementary group), else other; in
the class's bits, w lets it take locks in any mode and purge its own
orphans, r lets it see the lockspace's locks in ssi locks. Root may do
everything. A lockspace made on first use (ssi lock) has mode 0660.

Names are not squatted: a name root creates or first uses is shared by
everyone; the lockspaces other users create, or make by first use, are
their own (shown "own"), which no other user can reach, unless a shared
lockspace of that name existed first. An administrator shares a
lockspace with a group with:

  ssi lockspace create --group team --mode 0660 jobs`,
	}
	var group string
	var mode string
	create := &cobra.Command{
		Use:   "create [--group G] [--mode 0660] NAME",
		Short: "Create a lockspace (root's are shared; a user's are its own)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []dlm.CreateOption
			if group != "" {
				gid, err := groupID(group)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, dlm.WithGroup(gid))
			}
			if mode != "" {
				m, err := parseMode(mode)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, dlm.WithMode(m))
			}
			return withDLM(cmd, g, func(ctx context.Context, c *dlm.Client) error {
				i, err := c.CreateLockspace(ctx, args[0], opts...)
				if err == nil {
					renderLockspaces(g.out, []dlm.LockspaceInfo{i})
				}
				return err
			})
		},
	}
	create.Flags().StringVar(&group, "group", "", "the lockspace's group, a name or number (default: yours)")
	create.Flags().StringVar(&mode, "mode", "", "permission bits in octal (default 0660)")
	chmod := &cobra.Command{
		Use:   "chmod MODE NAME",
		Short: "Set a lockspace's mode (its owner or root)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseMode(args[0])
			if err != nil {
				return usageError{err}
			}
			return withDLM(cmd, g, func(ctx context.Context, c *dlm.Client) error {
				i, err := c.ChmodLockspace(ctx, args[1], m)
				if err == nil {
					renderLockspaces(g.out, []dlm.LockspaceInfo{i})
				}
				return err
			})
		},
	}
	chown := &cobra.Command{
		Use:   "chown USER[:GROUP] NAME",
		Short: "Set a lockspace's owner and group, as chown(1): only root gives a lockspace away",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, gid, err := parseOwner(args[0])
			if err != nil {
				return usageError{err}
			}
			return withDLM(cmd, g, func(ctx context.Context, c *dlm.Client) error {
				i, err := c.ChownLockspace(ctx, args[1], uid, gid)
				if err == nil {
					renderLockspaces(g.out, []dlm.LockspaceInfo{i})
				}
				return err
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a lockspace (its owner or root); refused while it has locks",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDLM(cmd, g, func(ctx context.Context, c *dlm.Client) error {
				return c.DeleteLockspace(ctx, args[0])
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the lockspaces you own or may see (root: all)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withDLM(cmd, g, func(ctx context.Context, c *dlm.Client) error {
				l, err := c.ListLockspaces(ctx)
				if err == nil {
					renderLockspaces(g.out, l)
				}
				return err
			})
		},
	}
	cmd.AddCommand(create, chmod, chown, del, list)
	return cmd
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d (see `%s --help`)", cmd.CommandPath(), n, len(args), cmd.CommandPath())}
		}
		return nil
	}
}

func withDLM(cmd *cobra.Command, g *globals, f func(context.Context, *dlm.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	c, err := dlm.New(ctx, dlm.WithSocket(g.socket("dlmd")))
	if err != nil {
		return err
	}
	defer c.Close()
	return f(ctx, c)
}

// parseMode reads octal permission bits 1..0777.
func parseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m == 0 || m > 0o777 {
		return 0, fmt.Errorf("mode %q: want octal permission bits 0001..0777 such as 0660", s)
	}
	return uint32(m), nil
}

// parseOwner reads USER[:GROUP] (names or numbers; either may be empty,
// as in chown(1)); -1 for the part not given.
func parseOwner(s string) (uid, gid int64, err error) {
	u, gr, hasGroup := strings.Cut(s, ":")
	uid, gid = -1, -1
	if u != "" {
		id, err := userID(u)
		if err != nil {
			return 0, 0, err
		}
		uid = int64(id)
	}
	if hasGroup && gr != "" {
		id, err := groupID(gr)
		if err != nil {
			return 0, 0, err
		}
		gid = int64(id)
	}
	if uid < 0 && gid < 0 {
		return 0, 0, fmt.Errorf("owner %q: want USER, USER:GROUP or :GROUP", s)
	}
	return uid, gid, nil
}

func userID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("user %q: %w", s, err)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

func groupID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	gr, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", s, err)
	}
	n, err := strconv.ParseUint(gr.Gid, 10, 32)
	return uint32(n), err
}

// renderLockspaces prints one row per lockspace.
func renderLockspaces(w io.Writer, l []dlm.LockspaceInfo) {
	if len(l) == 0 {
		fmt.Fprintln(w, "no lockspaces")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCKSPACE\tOWNER\tGROUP\tMODE\tKIND")
	for _, i := range l {
		kind := "shared"
		switch {
		case i.System:
			kind = "system"
		case i.Own:
			kind = "own"
		}
		if !i.Explicit {
			kind += ",first-use"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%04o\t%s\n", escapeName(i.Name), userName(i.UID), groupName(i.GID), i.Mode, kind)
	}
	_ = tw.Flush()
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return strconv.Itoa(int(uid))
}

func groupName(gid uint32) string {
	if gr, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		return gr.Name
	}
	return strconv.Itoa(int(gid))
}
