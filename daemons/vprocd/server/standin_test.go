package server

import (
	"slices"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// TestDropStandIns: a program exec started on node 2 for a caller of
// node 1 shares its cpid with the ssi exec standing for it on node 1; the
// merged table keeps the program's row only.
func TestDropStandIns(t *testing.T) {
	c := int32(cpid.MustMake(1, 100))  // the ssi exec on node 1
	own := int32(cpid.MustMake(2, 50)) // a process of node 2
	other := int32(cpid.MustMake(1, 7))
	for _, tc := range []struct {
		name   string
		tables map[uint32][]int32 // node -> cpids of its rows
		want   map[uint32][]int32
	}{
		{"no remote program", map[uint32][]int32{1: {c, other}, 2: {own}}, map[uint32][]int32{1: {c, other}, 2: {own}}},
		{"stand-in dropped", map[uint32][]int32{1: {c, other}, 2: {own, c}}, map[uint32][]int32{1: {other}, 2: {own, c}}},
		{"program alone", map[uint32][]int32{2: {c}}, map[uint32][]int32{2: {c}}},
		{"stand-in alone (node 2 not asked)", map[uint32][]int32{1: {c}}, map[uint32][]int32{1: {c}}},
	} {
		var tables []*vprocv1.NodeTable
		for _, n := range []uint32{1, 2} {
			if ids, ok := tc.tables[n]; ok {
				tb := &vprocv1.NodeTable{Node: n}
				for _, id := range ids {
					tb.Procs = append(tb.Procs, &vprocv1.Proc{Cpid: id, Node: n})
				}
				tables = append(tables, tb)
			}
		}
		dropStandIns(tables)
		for _, tb := range tables {
			var got []int32
			for _, p := range tb.Procs {
				got = append(got, p.Cpid)
			}
			if !slices.Equal(got, tc.want[tb.Node]) {
				t.Errorf("%s: node %d keeps %v, want %v", tc.name, tb.Node, got, tc.want[tb.Node])
			}
		}
	}
}
