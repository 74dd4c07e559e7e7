package server

import (
	"errors"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/procfs"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/daemons/vprocd/pswire"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// FuzzPsRequest decodes a local caller's ps request and checks it as the
// local API does: no input may panic, and a filter that passes is within
// bounds.
func FuzzPsRequest(f *testing.F) {
	for _, m := range []*vprocv1.PsRequest{
		{},
		{Nodes: []uint32{1, 2}, Uids: []uint32{0}, Cpids: []int32{int32(cpid.Min)}, TimeoutMs: 300},
	} {
		raw, _ := proto.Marshal(m)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m vprocv1.PsRequest
		if proto.Unmarshal(raw, &m) != nil {
			return
		}
		if checkPs(m.Nodes, m.Uids, m.Cpids) != nil {
			return
		}
		fl := pswire.Filter(&m)
		if len(fl.Nodes) > maxPsFilter || len(fl.UIDs) > maxPsFilter || len(fl.CPIDs) > maxPsFilter {
			t.Fatalf("accepted a filter of %d/%d/%d", len(fl.Nodes), len(fl.UIDs), len(fl.CPIDs))
		}
		fl.Apply([]proctable.Row{{CPID: cpid.Min, Node: 1, PID: 1}})
	})
}

// FuzzNodeTable decodes what a peer answers to Snapshot as the asking
// node does: no input may panic, and no row is taken for another node
// than the table's.
func FuzzNodeTable(f *testing.F) {
	raw, _ := proto.Marshal(pswire.Table(proctable.Snapshot{Node: 2, Rows: []proctable.Row{
		{CPID: cpid.MustMake(2, 5), Node: 2, PID: 5, Args: []string{"a", "b"}},
	}}, &vprocv1.NodeLoad{Cpus: 2}))
	f.Add(raw)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m vprocv1.NodeTable
		if proto.Unmarshal(raw, &m) != nil {
			return
		}
		s := pswire.Snapshot(&m)
		for _, r := range s.Rows {
			if r.Node != s.Node {
				t.Fatalf("row of node %d in node %d's table", r.Node, s.Node)
			}
		}
	})
}

// FuzzFilesRequest decodes a peer's Files request and serves it from an
// empty /proc: no input may panic, and nothing is found.
func FuzzFilesRequest(f *testing.F) {
	raw, _ := proto.Marshal(&vprocpeerv1.FilesRequest{Origin: 1, Cpid: int32(cpid.MustMake(2, 5)), ReaderUid: 1000, WantEnviron: true})
	f.Add(raw)
	s := New(Config{Node: 2, Proc: fstest.MapFS{}})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m vprocpeerv1.FilesRequest
		if proto.Unmarshal(raw, &m) != nil {
			return
		}
		_, err := s.localProc(cpid.CPID(m.Cpid), m.ReaderUid, m.WantEnviron)
		if err == nil || !(errors.Is(err, procfs.ErrNotFound) || proctable.Gone(err)) {
			t.Fatalf("cpid %d from an empty /proc: %v", m.Cpid, err)
		}
	})
}
