package procfs

import (
	"context"
	"fmt"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

// Local is a Provider of this node's own processes, read from /proc with
// R: each is the cpid of R.Node and its pid. It is what vprocd can mount
// before it has the cluster-wide table, and what that table asks a node
// for its part.
type Local struct {
	R proctable.Reader
}

// List reads every process of the node.
func (l Local) List(context.Context) ([]proctable.Row, error) {
	s, err := l.R.Snapshot()
	return s.Rows, err
}

// Get reads process c if it is of this node.
func (l Local) Get(_ context.Context, c cpid.CPID) (Proc, error) {
	if !c.Valid() || c.Node() != l.R.Node {
		return Proc{}, fmt.Errorf("procfs: cpid %d is not of node %d: %w", c, l.R.Node, ErrNotFound)
	}
	boot, uptime, err := l.R.System()
	if err != nil {
		return Proc{}, err
	}
	row, err := l.R.Row(c.PID(), boot, uptime)
	if err != nil {
		return Proc{}, err
	}
	files, err := l.R.Files(c.PID())
	if err != nil {
		return Proc{}, err
	}
	return Proc{Row: row, Files: files}, nil
}

// Goto refuses: moving a process takes the cluster's vprocd.
func (l Local) Goto(_ context.Context, c cpid.CPID, _, _ uint32) error {
	return fmt.Errorf("procfs: process %d: only the cluster's view moves processes: %w", c, ErrCannotMove)
}
