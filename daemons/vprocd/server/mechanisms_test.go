package server

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/internal/criu"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// TestMechanisms: vprocd says the CRIU state it was given at start.
func TestMechanisms(t *testing.T) {
	for _, tt := range []struct {
		st   criu.State
		want *vprocv1.CRIUState
	}{
		{criu.State{Status: criu.Ready, Bin: "/usr/sbin/criu", Version: criu.Version{Major: 4, Minor: 2, Sublevel: 1}},
			&vprocv1.CRIUState{Status: "ready", Path: "/usr/sbin/criu", Version: "4.2.1"}},
		{criu.State{Status: criu.TooOld, Bin: "/usr/sbin/criu", Version: criu.Version{Major: 3, Minor: 17, Sublevel: 1}, Reason: "4.2 or later is needed"},
			&vprocv1.CRIUState{Status: "too-old", Path: "/usr/sbin/criu", Version: "3.17.1", Reason: "4.2 or later is needed"}},
		{criu.State{Status: criu.Missing, Reason: "no criu on PATH"},
			&vprocv1.CRIUState{Status: "missing", Reason: "no criu on PATH"}},
		{criu.State{Status: criu.Broken, Bin: "/opt/criu", Reason: "exec format error"},
			&vprocv1.CRIUState{Status: "broken", Path: "/opt/criu", Reason: "exec format error"}},
		{criu.State{Status: criu.CheckFailed, Bin: "/usr/sbin/criu", Version: criu.Version{Major: 4, Minor: 2}, Reason: "criu check: exit 1"},
			&vprocv1.CRIUState{Status: "check-failed", Path: "/usr/sbin/criu", Version: "4.2.0", Reason: "criu check: exit 1"}},
	} {
		s := New(Config{Node: 1, Migrate: MigrateConfig{CRIU: tt.st}})
		r, err := migrateAPI{s: s}.Mechanisms(context.Background(), &vprocv1.MechanismsRequest{})
		s.Close()
		if err != nil || !proto.Equal(r.GetCriu(), tt.want) {
			t.Errorf("%v: %v, %v; want %v", tt.st, r.GetCriu(), err, tt.want)
		}
	}
}
