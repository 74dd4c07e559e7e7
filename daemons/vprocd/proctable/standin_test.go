package proctable

import (
	"reflect"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

func TestWithoutStandIns(t *testing.T) {
	c := cpid.MustMake(1, 100)  // the ssi exec on node 1, standing for a program on node 2
	own := cpid.MustMake(2, 50) // a process of node 2
	standIn := Row{CPID: c, Node: 1, PID: 100, Comm: "ssi"}
	program := Row{CPID: c, Node: 2, PID: 7, Comm: "sleep"}
	local := Row{CPID: own, Node: 2, PID: 50, Comm: "sh"}
	for _, tc := range []struct {
		name string
		in   []Row
		want []Row
	}{
		{"none", nil, nil},
		{"no remote program", []Row{standIn, local}, []Row{standIn, local}},
		{"stand-in dropped", []Row{standIn, local, program}, []Row{local, program}},
		{"program alone", []Row{program}, []Row{program}},
	} {
		got := WithoutStandIns(tc.in)
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
