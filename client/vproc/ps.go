package vproc

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/daemons/vprocd/pswire"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// PsFilter selects the processes Ps returns: an empty list selects any
// value, and a process must match every list that is not empty.
type PsFilter struct {
	proctable.Filter
	// Timeout bounds the wait for each node; 0 is vprocd's default (2s).
	Timeout time.Duration
}

// Table is the cluster's process table as one Ps saw it.
type Table struct {
	// Nodes are the snapshots of the nodes that answered, by number:
	// each with the node's own Uptime, for proctable.TopCPU.
	Nodes []NodeTable
	// Failures are the nodes asked that gave no table (DOWN when named
	// in the filter, or not answering in time), by number.
	Failures []NodeFailure
}

// NodeTable is one node's processes and, when it could read it, its
// load.
type NodeTable struct {
	proctable.Snapshot
	// Load is the node's own measurement, read with its table (Self;
	// Measured and Heard are not set).
	Load *Load
}

// NodeFailure is a node that gave no table, and why in one line.
type NodeFailure struct {
	Node   uint32
	Reason string
	// Timeout: it did not answer in time.
	Timeout bool
}

// Rows returns every node's rows, sorted by cpid (vprocd leaves out the
// stand-ins of remote programs: each cpid is one row).
func (t *Table) Rows() []proctable.Row {
	var rows []proctable.Row
	for _, n := range t.Nodes {
		rows = append(rows, n.Rows...)
	}
	proctable.SortByCPID(rows)
	return rows
}

// Ps lists the processes of every UP node of the cluster that f selects,
// asked in parallel by the local vprocd. Every user sees every process
// and its command line (as in /proc), never its environment. A node that
// does not answer within f.Timeout is in Failures; the error is for
// vprocd itself (ErrNotRunning) or a filter it refuses (ErrRefused).
func (c *Client) Ps(ctx context.Context, f PsFilter) (*Table, error) {
	// The cluster's table: gRPC's default 4 MiB is a few hundred Java
	// command lines.
	r, err := vprocv1.NewProcTableClient(c.conn).Ps(ctx, pswire.Request(f.Filter, f.Timeout), grpc.MaxCallRecvMsgSize(1<<30))
	if err != nil {
		return nil, c.wrap(err)
	}
	t := &Table{}
	for _, nt := range r.GetNodes() {
		n := NodeTable{Snapshot: pswire.Snapshot(nt)}
		if l := nt.GetLoad(); l != nil {
			n.Load = &Load{Node: int(n.Node), Self: true, RunQueue: int(l.GetRunQueue()), Load1: l.GetLoad1(), CPUs: int(l.GetCpus()), FreeMem: l.GetFreeMem()}
		}
		t.Nodes = append(t.Nodes, n)
	}
	slices.SortFunc(t.Nodes, func(a, b NodeTable) int { return int(a.Node) - int(b.Node) })
	for _, nf := range r.GetFailures() {
		t.Failures = append(t.Failures, NodeFailure{Node: nf.GetNode(), Reason: nf.GetReason(), Timeout: nf.GetTimeout()})
	}
	return t, nil
}
