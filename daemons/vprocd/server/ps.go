package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/load"
	"github.com/openssi/openssi/daemons/vprocd/procfs"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/daemons/vprocd/pswire"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// The process table: `ssi ps`, `ssi top` and /cluster/proc. The local API
// (ProcTable.Ps) asks every UP node's vprocd (ProcTablePeer.Snapshot) in
// parallel, each within a deadline, and merges what came back; a node that
// did not answer is named in the reply. No environment ever travels in a
// table; /cluster/proc's environ is fetched per process (Files) and only
// for a reader who may read it.

// Bounds of a Ps request's wait for each node.
const (
	DefaultPsTimeout = 2 * time.Second
	MaxPsTimeout     = 60 * time.Second
)

// procFS is the /proc this node's tables are read from.
func (s *Server) procFS() fs.FS {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Proc != nil {
		return s.cfg.Proc
	}
	return os.DirFS("/proc")
}

func (s *Server) reader() proctable.Reader {
	return proctable.Reader{FS: s.procFS(), Node: s.cfg.Node}
}

// localTable reads this node's processes that f selects (its Nodes are
// not looked at) and its load, giving up when ctx ends.
func (s *Server) localTable(ctx context.Context, f proctable.Filter) (*vprocv1.NodeTable, error) {
	return whileAlive(ctx, func() (*vprocv1.NodeTable, error) {
		snap, err := s.reader().Snapshot()
		if err != nil {
			return nil, err
		}
		// A program started through vprocd is named by the cpid its
		// origin gave it (the one `ssi exec` printed), not by its pid
		// here.
		named := s.recs.byPID()
		for i := range snap.Rows {
			if c, ok := named[snap.Rows[i].PID]; ok {
				snap.Rows[i].CPID = c
			}
		}
		// A copy restored for a move shows once recorded, at its commit.
		held := s.heldCopies()
		snap.Rows = slices.DeleteFunc(snap.Rows, func(r proctable.Row) bool {
			_, recorded := named[r.PID]
			return held[r.PID] && !recorded
		})
		f.Nodes = nil
		snap.Rows = f.Apply(snap.Rows)
		s.fillMigrate(snap.Rows) // criu.go
		return pswire.Table(snap, s.localLoad()), nil
	})
}

// localLoad is this node's load as /proc says, or nil when it cannot be
// read.
func (s *Server) localLoad() *vprocv1.NodeLoad {
	fsys := s.procFS()
	var texts [3][]byte
	for i, name := range []string{"loadavg", "stat", "meminfo"} {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil
		}
		texts[i] = b
	}
	v, err := load.Measure(s.cfg.Node, time.Time{}, texts[0], texts[1], texts[2])
	if err != nil {
		return nil
	}
	return &vprocv1.NodeLoad{RunQueue: v.RunQueue, Load1: v.Load1, Cpus: v.CPUs, FreeMem: v.FreeMem}
}

// whileAlive runs read in a goroutine of its own and returns its result,
// or ctx's error as soon as ctx ends (a hung /proc read is left behind).
func whileAlive[T any](ctx context.Context, read func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := read()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// upNumbers returns the nodes believed UP, ascending.
func (s *Server) upNumbers() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns []uint32
	for n, st := range s.nodes {
		if st.up {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// ps asks the nodes of req (every UP node when it names none) for their
// tables in parallel.
func (s *Server) ps(ctx context.Context, req *vprocv1.PsRequest) *vprocv1.PsReply {
	f := pswire.Filter(req)
	timeout := DefaultPsTimeout
	if ms := req.GetTimeoutMs(); ms > 0 {
		timeout = min(time.Duration(ms)*time.Millisecond, MaxPsTimeout)
	}
	reply := &vprocv1.PsReply{}
	var ask []uint32
	if len(f.Nodes) == 0 {
		ask = s.upNumbers()
	} else {
		wanted := slices.Clone(f.Nodes)
		slices.Sort(wanted)
		for _, n := range slices.Compact(wanted) {
			if _, err := s.upNode(n); err != nil {
				reply.Failures = append(reply.Failures, &vprocv1.NodeFailure{Node: n, Reason: status.Convert(err).Message()})
				continue
			}
			ask = append(ask, n)
		}
	}
	tables := make([]*vprocv1.NodeTable, len(ask))
	failures := make([]*vprocv1.NodeFailure, len(ask))
	var wg sync.WaitGroup
	for i, n := range ask {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			t, err := s.nodeTable(nctx, n, req)
			switch {
			case err == nil && t.GetNode() == n:
				tables[i] = t
			case err == nil:
				failures[i] = &vprocv1.NodeFailure{Node: n, Reason: fmt.Sprintf("vproc: node %d answered for node %d", n, t.GetNode())}
			case nctx.Err() != nil && ctx.Err() == nil, status.Code(err) == codes.DeadlineExceeded:
				failures[i] = &vprocv1.NodeFailure{Node: n, Timeout: true,
					Reason: fmt.Sprintf("vproc: node %d did not answer within %v", n, timeout)}
			default:
				failures[i] = &vprocv1.NodeFailure{Node: n, Reason: fmt.Sprintf("vproc: node %d: %s", n, status.Convert(err).Message())}
			}
		}()
	}
	wg.Wait()
	for i := range ask {
		if tables[i] != nil {
			reply.Nodes = append(reply.Nodes, tables[i])
		}
		if failures[i] != nil {
			reply.Failures = append(reply.Failures, failures[i])
		}
	}
	dropStandIns(reply.Nodes)
	slices.SortFunc(reply.Failures, func(a, b *vprocv1.NodeFailure) int { return int(a.Node) - int(b.Node) })
	return reply
}

// nodeTable is node n's table, read here or asked of its vprocd.
func (s *Server) nodeTable(ctx context.Context, n uint32, req *vprocv1.PsRequest) (*vprocv1.NodeTable, error) {
	if n == s.cfg.Node {
		return s.localTable(ctx, pswire.Filter(req))
	}
	conn, err := s.peer(ctx, n)
	if err != nil {
		return nil, err
	}
	return vprocpeerv1.NewProcTablePeerClient(conn).Snapshot(ctx, &vprocpeerv1.SnapshotRequest{
		Origin: s.cfg.Node, Uids: req.GetUids(), Cpids: req.GetCpids(),
	}, grpc.MaxCallRecvMsgSize(MaxNodeTableBytes))
}

// MaxNodeTableBytes bounds one node's table on the wire: gRPC's default
// 4 MiB is a few hundred Java command lines.
const MaxNodeTableBytes = 64 << 20

// procTable is the local API's ProcTable service.
type procTable struct {
	vprocv1.UnimplementedProcTableServer
	s *Server
}

// Ps lists the cluster's processes for any local caller: as in /proc,
// everyone sees every process and its command line, never its
// environment.
func (p procTable) Ps(ctx context.Context, req *vprocv1.PsRequest) (*vprocv1.PsReply, error) {
	if err := checkPs(req.GetNodes(), req.GetUids(), req.GetCpids()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return p.s.ps(ctx, req), nil
}

// maxPsFilter bounds each list of a filter.
const maxPsFilter = 4096

func checkPs(nodes, uids []uint32, cpids []int32) error {
	if len(nodes) > maxPsFilter || len(uids) > maxPsFilter || len(cpids) > maxPsFilter {
		return fmt.Errorf("vproc: a filter of more than %d values", maxPsFilter)
	}
	return nil
}

// procTablePeer is the peer service ProcTablePeer.
type procTablePeer struct {
	vprocpeerv1.UnimplementedProcTablePeerServer
	s *Server
}

// Snapshot returns this node's processes to a peer vprocd.
func (p procTablePeer) Snapshot(ctx context.Context, req *vprocpeerv1.SnapshotRequest) (*vprocv1.NodeTable, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	if err := checkPs(nil, req.GetUids(), req.GetCpids()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f := pswire.Filter(&vprocv1.PsRequest{Uids: req.GetUids(), Cpids: req.GetCpids()})
	t, err := p.s.localTable(ctx, f)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	return t, nil
}

// Files returns one process of this node's files to a peer vprocd; the
// environment only when the reader may read it.
func (p procTablePeer) Files(ctx context.Context, req *vprocpeerv1.FilesRequest) (*vprocpeerv1.FilesReply, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	proc, err := whileAlive(ctx, func() (procfs.Proc, error) {
		return p.s.localProc(cpid.CPID(req.GetCpid()), req.GetReaderUid(), req.GetWantEnviron())
	})
	switch {
	case err == nil:
	case errors.Is(err, procfs.ErrNotFound) || proctable.Gone(err):
		return nil, status.Errorf(codes.NotFound, "vproc: no process %d on node %d", req.GetCpid(), p.s.cfg.Node)
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	default:
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &vprocpeerv1.FilesReply{Proc: pswire.Proc(proc.Row), Stat: proc.Files.Stat, Status: proc.Files.Status,
		Cmdline: proc.Files.Cmdline, Environ: proc.Files.Environ}, nil
}

// localProc reads process c of this node; its environment only when
// wantEnviron and reader may read it (procfs.MayReadEnviron).
func (s *Server) localProc(c cpid.CPID, reader uint32, wantEnviron bool) (procfs.Proc, error) {
	var proc procfs.Proc
	var err error
	if pid, ok := s.record(c); ok {
		// Started here through vprocd, named by its origin's cpid.
		proc, err = s.readProc(pid)
		proc.Row.CPID = c
	} else {
		proc, err = procfs.Local{R: s.reader()}.Get(context.Background(), c)
	}
	if err != nil {
		return procfs.Proc{}, err
	}
	if !wantEnviron || !procfs.MayReadEnviron(reader, proc.Row.UID) {
		proc.Files.Environ = nil
	}
	return proc, nil
}

// readProc reads process pid of this node.
func (s *Server) readProc(pid int32) (procfs.Proc, error) {
	r := s.reader()
	boot, uptime, err := r.System()
	if err != nil {
		return procfs.Proc{}, err
	}
	row, err := r.Row(pid, boot, uptime)
	if err != nil {
		return procfs.Proc{}, err
	}
	files, err := r.Files(pid)
	if err != nil {
		return procfs.Proc{}, err
	}
	return procfs.Proc{Row: row, Files: files}, nil
}

// dropStandIns leaves out, from the tables of several nodes, the
// stand-ins of remote programs: a program `ssi exec` started on another
// node is named by the cpid of the `ssi exec` that stands for it on its
// origin (its table's node is not its cpid's node), so the two share a
// cpid, and the program's row is the one kept.
func dropStandIns(tables []*vprocv1.NodeTable) {
	remote := map[cpid.CPID]bool{}
	for _, t := range tables {
		for _, p := range t.Procs {
			if c := cpid.CPID(p.GetCpid()); c.Node() != t.Node {
				remote[c] = true
			}
		}
	}
	if len(remote) == 0 {
		return
	}
	for _, t := range tables {
		t.Procs = slices.DeleteFunc(t.Procs, func(p *vprocv1.Proc) bool {
			c := cpid.CPID(p.GetCpid())
			return c.Node() == t.Node && remote[c]
		})
	}
}

// registerPs adds the process table's local service to g.
func registerPs(g *grpc.Server, s *Server) { vprocv1.RegisterProcTableServer(g, procTable{s: s}) }

// registerPsPeer adds the process table's peer service to g.
func registerPsPeer(g *grpc.Server, s *Server) {
	vprocpeerv1.RegisterProcTablePeerServer(g, procTablePeer{s: s})
}
