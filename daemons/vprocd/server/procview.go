package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/procfs"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/daemons/vprocd/pswire"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// ClusterProcs is the procfs.Provider of /cluster/proc: the list is the
// merged table of every UP node (a node that does not answer is left out
// of that listing), a process is read on its cpid's node.
type ClusterProcs struct{ s *Server }

// Procs returns s's cluster-wide provider.
func (s *Server) Procs() ClusterProcs { return ClusterProcs{s: s} }

// List returns every UP node's processes that answered in time.
func (p ClusterProcs) List(ctx context.Context) ([]proctable.Row, error) {
	reply := p.s.ps(ctx, &vprocv1.PsRequest{})
	for _, f := range reply.Failures {
		p.s.log.WithField("node", f.Node).Debug("/cluster/proc listing without a node: " + f.Reason)
	}
	var rows []proctable.Row
	for _, t := range reply.Nodes {
		rows = append(rows, pswire.Snapshot(t).Rows...)
	}
	if len(reply.Nodes) == 0 && len(reply.Failures) > 0 {
		return nil, errors.New(reply.Failures[0].Reason)
	}
	return rows, nil
}

// Get reads process c on its node. The environment comes only when the
// reader of ctx (the FUSE request's caller) may read it: procfs checks
// that too, and the node that reads it checks it again.
func (p ClusterProcs) Get(ctx context.Context, c cpid.CPID) (procfs.Proc, error) {
	if !c.Valid() {
		return procfs.Proc{}, procfs.ErrNotFound
	}
	reader, known := uint32(0), false
	if caller, ok := fuse.FromContext(ctx); ok {
		reader, known = caller.Uid, true
	}
	n := p.nodeOf(ctx, c)
	if n == p.s.cfg.Node {
		return whileAlive(ctx, func() (procfs.Proc, error) { return p.s.localProc(c, reader, known) })
	}
	if _, err := p.s.upNode(n); err != nil {
		return procfs.Proc{}, fmt.Errorf("%w: %v", procfs.ErrNotFound, status.Convert(err).Message())
	}
	gctx, cancel := context.WithTimeout(ctx, DefaultPsTimeout)
	defer cancel()
	conn, err := p.s.peer(gctx, n)
	if err != nil {
		return procfs.Proc{}, err
	}
	r, err := vprocpeerv1.NewProcTablePeerClient(conn).Files(gctx, &vprocpeerv1.FilesRequest{
		Origin: p.s.cfg.Node, Cpid: int32(c), ReaderUid: reader, WantEnviron: known,
	})
	if status.Code(err) == codes.NotFound {
		return procfs.Proc{}, fmt.Errorf("%w: %s", procfs.ErrNotFound, status.Convert(err).Message())
	}
	if err != nil {
		return procfs.Proc{}, fmt.Errorf("vproc: process %d on node %d: %s", c, n, status.Convert(err).Message())
	}
	row := pswire.Row(r.GetProc())
	if row.CPID != c || row.Node != n {
		return procfs.Proc{}, fmt.Errorf("vproc: node %d answered for process %d with %d of node %d", n, c, row.CPID, row.Node)
	}
	return procfs.Proc{Row: row, Files: proctable.Files{Stat: r.Stat, Status: r.Status, Cmdline: r.Cmdline, Environ: r.Environ}}, nil
}

// Goto moves process c to node for uid caller, as `ssi migrate` does
// (migrateTo: the node it runs on checks the caller is its owner or root),
// and waits for the move's end: the write of /cluster/proc/<cpid>/goto.
// Its errors wrap procfs's, by the status code of the refusal.
func (p ClusterProcs) Goto(ctx context.Context, c cpid.CPID, caller, node uint32) error {
	if !c.Valid() {
		return procfs.ErrNotFound
	}
	if node == 0 || node > cpid.MaxNode {
		return fmt.Errorf("%w: %d is not a node number", procfs.ErrCannotMove, node)
	}
	_, err := p.s.migrateTo(ctx, caller, c, node, false)
	// Where it runs changed (or may have): the next lookup reads the
	// cluster's table again rather than ask the node it left.
	w := &p.s.where
	w.mu.Lock()
	w.at = time.Time{}
	w.mu.Unlock()
	return gotoErr(err)
}

// gotoErr turns migrateTo's error into procfs's, for its errno.
func gotoErr(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	var kind error
	switch st.Code() {
	case codes.PermissionDenied:
		kind = procfs.ErrNotOwner
	case codes.NotFound:
		kind = procfs.ErrNotFound
	case codes.InvalidArgument, codes.FailedPrecondition:
		kind = procfs.ErrCannotMove
	case codes.Unavailable, codes.ResourceExhausted:
		kind = procfs.ErrBusy
	case codes.Canceled:
		kind = context.Canceled
	default:
		return errors.New(st.Message())
	}
	return fmt.Errorf("%w: %s", kind, st.Message())
}

// whereFresh is how long ClusterProcs.Get trusts the cluster's table it
// read to find a process's node: every lookup, stat and open of
// /cluster/proc gets, so one `ls -l` must not scan the cluster per entry.
const whereFresh = time.Second

// whereCache is the cluster's table Get last read.
type whereCache struct {
	mu   sync.Mutex
	at   time.Time
	rows []proctable.Row
}

// nodeOf is the node process c runs on: here for a program vprocd
// started here; else, for a program `ssi exec` started elsewhere (named
// by its origin's cpid), the node the cluster's table (at most
// whereFresh old) shows it on; else c's own node.
func (p ClusterProcs) nodeOf(ctx context.Context, c cpid.CPID) uint32 {
	if _, ok := p.s.record(c); ok {
		return p.s.cfg.Node
	}
	w := &p.s.where
	w.mu.Lock()
	rows, fresh := w.rows, time.Since(w.at) < whereFresh
	w.mu.Unlock()
	if !fresh {
		var err error
		if rows, err = p.List(ctx); err != nil {
			return c.Node()
		}
		w.mu.Lock()
		w.at, w.rows = time.Now(), rows
		w.mu.Unlock()
	}
	for _, r := range rows {
		if r.CPID == c {
			return r.Node
		}
	}
	return c.Node()
}

// ProcMount is /cluster/proc mounted by MountProcs.
type ProcMount struct {
	dir string
	srv *fuse.Server
}

// ErrNoFUSE is what MountProcs wraps when the node has no /dev/fuse.
var ErrNoFUSE = errors.New("/dev/fuse is missing (load the fuse module, or let vprocd's unit use the device)")

// MountProcs mounts the cluster's process view (ClusterProcs) on dir,
// creating it, and replacing a mount a vprocd that died left there. It
// needs root and /dev/fuse.
func (s *Server) MountProcs(dir string) (*ProcMount, error) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("vproc: cannot mount %s: %w", dir, ErrNoFUSE)
	}
	dir = filepath.Clean(dir)
	if _, err := os.Stat(dir); errors.Is(err, syscall.ENOTCONN) {
		// The FUSE server of the mount is gone (vprocd was killed):
		// detach it, or nothing can be mounted there.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("vproc: cannot mount %s: a stale mount is there and detaching it failed: %w", dir, err)
		}
		s.log.WithField("dir", dir).Warn("detached the stale /cluster/proc mount of an earlier vprocd")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("vproc: cannot mount %s: %w", dir, err)
	}
	srv, err := procfs.Mount(dir, s.Procs(), procfs.Options{OnError: func(err error) {
		s.log.WithError(err).Warn("/cluster/proc: reading a process failed")
	}})
	if err != nil {
		return nil, fmt.Errorf("vproc: %w", err)
	}
	return &ProcMount{dir: dir, srv: srv}, nil
}

// Unmount unmounts the view; when it is busy (a shell has its directory
// there) the mount is detached, and goes when the last user leaves.
func (m *ProcMount) Unmount() error {
	if err := m.srv.Unmount(); err != nil {
		if derr := unix.Unmount(m.dir, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("vproc: unmount %s: %w (detach: %v)", m.dir, err, derr)
		}
		// The server ends when the kernel lets go of the connection.
		done := make(chan struct{})
		go func() { m.srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return nil
	}
	m.srv.Wait()
	return nil
}
