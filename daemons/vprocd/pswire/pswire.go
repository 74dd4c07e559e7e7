// Package pswire converts the process table between proctable's types and
// the messages of proto/vproc/v1 (ps.proto): vprocd and client/vproc share
// it, so the wire has one owner.
package pswire

import (
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// Proc is r as a message.
func Proc(r proctable.Row) *vprocv1.Proc {
	p := &vprocv1.Proc{
		Cpid: int32(r.CPID), Node: r.Node, Pid: r.PID, Ppid: int32(r.PPID), Uid: r.UID, Gid: r.GID,
		Stat: r.Stat, CpuPercent: r.CPU, RssKib: r.RSS, CpuTimeNs: int64(r.CPUTime), Nice: r.Nice,
		Comm: []byte(r.Comm), Kernel: r.Kernel, Migrate: r.Migrate,
	}
	if !r.Start.IsZero() {
		p.StartUnixNano = r.Start.UnixNano()
	}
	if r.Args != nil {
		p.Args = make([][]byte, len(r.Args))
		for i, a := range r.Args {
			p.Args[i] = []byte(a)
		}
	}
	return p
}

// Row is p as a row.
func Row(p *vprocv1.Proc) proctable.Row {
	r := proctable.Row{
		CPID: cpid.CPID(p.GetCpid()), Node: p.GetNode(), PID: p.GetPid(), PPID: cpid.CPID(p.GetPpid()),
		UID: p.GetUid(), GID: p.GetGid(), Stat: p.GetStat(), CPU: p.GetCpuPercent(), RSS: p.GetRssKib(),
		CPUTime: time.Duration(p.GetCpuTimeNs()), Nice: p.GetNice(), Comm: string(p.GetComm()), Kernel: p.GetKernel(),
		Migrate: p.GetMigrate(),
	}
	if ns := p.GetStartUnixNano(); ns != 0 {
		r.Start = time.Unix(0, ns)
	}
	if args := p.GetArgs(); args != nil {
		r.Args = make([]string, len(args))
		for i, a := range args {
			r.Args[i] = string(a)
		}
	}
	return r
}

// Table is s as a message, with load when it is not nil.
func Table(s proctable.Snapshot, load *vprocv1.NodeLoad) *vprocv1.NodeTable {
	t := &vprocv1.NodeTable{Node: s.Node, UptimeNs: int64(s.Uptime), Load: load, Procs: make([]*vprocv1.Proc, len(s.Rows))}
	if !s.Boot.IsZero() {
		t.BootUnixNano = s.Boot.UnixNano()
	}
	for i, r := range s.Rows {
		t.Procs[i] = Proc(r)
	}
	return t
}

// Snapshot is t as a snapshot. Rows that claim another node than the
// table's are dropped: a node speaks for its own processes only.
func Snapshot(t *vprocv1.NodeTable) proctable.Snapshot {
	s := proctable.Snapshot{Node: t.GetNode(), Uptime: time.Duration(t.GetUptimeNs()), Rows: make([]proctable.Row, 0, len(t.GetProcs()))}
	if ns := t.GetBootUnixNano(); ns != 0 {
		s.Boot = time.Unix(0, ns)
	}
	for _, p := range t.GetProcs() {
		if p.GetNode() != s.Node {
			continue
		}
		s.Rows = append(s.Rows, Row(p))
	}
	return s
}

// Filter is the filter of a request.
func Filter(r *vprocv1.PsRequest) proctable.Filter {
	f := proctable.Filter{Nodes: r.GetNodes(), UIDs: r.GetUids()}
	for _, c := range r.GetCpids() {
		f.CPIDs = append(f.CPIDs, cpid.CPID(c))
	}
	return f
}

// Request is the request of f (timeout 0: vprocd's default).
func Request(f proctable.Filter, timeout time.Duration) *vprocv1.PsRequest {
	r := &vprocv1.PsRequest{Nodes: f.Nodes, Uids: f.UIDs}
	for _, c := range f.CPIDs {
		r.Cpids = append(r.Cpids, int32(c))
	}
	if timeout > 0 {
		r.TimeoutMs = uint32(min(timeout.Milliseconds(), 1<<31))
		if r.TimeoutMs == 0 {
			r.TimeoutMs = 1
		}
	}
	return r
}
