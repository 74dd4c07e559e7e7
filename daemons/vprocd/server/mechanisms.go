package server

import (
	"context"

	"github.com/openssi/openssi/internal/criu"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// Mechanisms says what vprocd found of CRIU at start (`ssi status`), for
// anyone.
func (a migrateAPI) Mechanisms(context.Context, *vprocv1.MechanismsRequest) (*vprocv1.MechanismsReply, error) {
	return &vprocv1.MechanismsReply{Criu: criuState(a.s.cfg.Migrate.CRIU)}, nil
}

// criuState is st on the wire.
func criuState(st criu.State) *vprocv1.CRIUState {
	w := &vprocv1.CRIUState{Status: st.Status.String(), Path: st.Bin, Reason: st.Reason}
	if st.Version != (criu.Version{}) {
		w.Version = st.Version.String()
	}
	return w
}
