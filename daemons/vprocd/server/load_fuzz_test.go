package server

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/load"
	"github.com/openssi/openssi/internal/consul"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// FuzzPushVector: whatever vector a peer pushes, the window takes it or
// refuses it without panicking, and a vector it takes leaves every score
// a finite number, so placement still compares.
func FuzzPushVector(f *testing.F) {
	for _, m := range []*vprocv1.LoadVector{
		{Node: 2, RunQueue: 3, Load1: 1.5, Cpus: 4, FreeMem: 1 << 30, AtUnixNano: 1},
		{Node: 2, Load1: math.Inf(1), Cpus: 1},
		{Node: 2, Load1: math.NaN(), Cpus: 0, AtUnixNano: math.MaxInt64},
		{Node: 2, RunQueue: 1, RunQueueAvg: 0.7, Cpus: 2, AtUnixNano: 1},
		{Node: 2, RunQueueAvg: math.Inf(1), Cpus: 2},
		{Node: 2, RunQueueAvg: math.NaN(), Cpus: 2},
	} {
		raw, _ := proto.Marshal(m)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m vprocv1.LoadVector
		if proto.Unmarshal(raw, &m) != nil {
			return
		}
		w := load.New(load.Config{Self: 1})
		w.Members([]uint32{1, m.Node})
		now := time.Unix(1e9, 0)
		w.Measured(now, load.Vector{RunQueue: 1, CPUs: 2, At: now})
		if err := w.Heard(now, vectorOf(&m)); err != nil {
			return
		}
		for _, e := range w.Vectors(now) {
			if math.IsNaN(e.Score) || math.IsInf(e.Score, 0) {
				t.Fatalf("score %v of %+v", e.Score, e)
			}
		}
		if _, err := w.Place(now, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzLoadLevelName: a program name the local API takes is one ProgramOf
// can return and one key segment under openssi/vproc/loadlevel/.
func FuzzLoadLevelName(f *testing.F) {
	for _, s := range []string{"make", "../x", "a/b", "", "a b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if load.CheckProgram(name) != nil {
			return
		}
		if load.ProgramOf("/usr/bin/"+name) != name {
			t.Fatalf("%q is taken but no command's program", name)
		}
		if err := consul.ValidateKey(LevelsPrefix + name); err != nil {
			t.Fatalf("%q is taken but not a valid key: %v", name, err)
		}
	})
}
