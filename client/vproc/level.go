package vproc

import (
	"context"
	"time"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// LevelDecision is one of a node's load leveler's decisions, or a run of
// the same answer over consecutive periods.
type LevelDecision struct {
	// First and Last are when it was first and last taken (the node's
	// clock); Count how many periods in a row gave it.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
	// Kind is the answer in a word: moved, failed, balanced (no node
	// above a peer by more than the margin), stability (every process
	// too heavy for the stability rule), cool-down, nothing-migratable,
	// no-load, in-flight (the previous move not ended), disabled.
	Kind string `json:"kind"`
	// CPID is the process moved or tried (0: none); From and To the
	// nodes compared (0: none).
	CPID int64 `json:"cpid,omitempty"`
	From int   `json:"from,omitempty"`
	To   int   `json:"to,omitempty"`
	// ProcLoad is the process's load (runnable tasks); FromLoad and
	// ToLoad the nodes' loads per CPU as the decision saw them.
	ProcLoad float64 `json:"proc_load"`
	FromLoad float64 `json:"from_load"`
	ToLoad   float64 `json:"to_load"`
	// Reason says why, in one line.
	Reason string `json:"reason"`
}

// LevelStatus is a node's load leveler: its settings, the loads the node
// believes and its recent decisions (`ssi loadlevel status`).
type LevelStatus struct {
	// Node is the asked node; Now its clock when it replied.
	Node int       `json:"node"`
	Now  time.Time `json:"now"`
	// Enabled: the leveler runs (vprocd.leveler.enabled).
	Enabled   bool          `json:"enabled"`
	Period    time.Duration `json:"period_ns"`
	CoolDown  time.Duration `json:"cool_down_ns"`
	Stability float64       `json:"stability"`
	// Loads are the loads the node believes, as Loads returns them.
	Loads []Load `json:"loads"`
	// Decisions are the recent ones, oldest first (at most 32).
	Decisions []LevelDecision `json:"decisions"`
	// Moving is the process the node is moving now (0: none), to node
	// MovingTo.
	Moving   int64 `json:"moving,omitempty"`
	MovingTo int   `json:"moving_to,omitempty"`
}

// LevelStatus returns the local vprocd's load leveler status.
func (c *Client) LevelStatus(ctx context.Context) (LevelStatus, error) {
	r, err := c.load().LevelStatus(ctx, &vprocv1.LevelStatusRequest{})
	if err != nil {
		return LevelStatus{}, c.wrap(err)
	}
	st := LevelStatus{Node: int(r.Node), Now: time.Unix(0, r.NowUnixNano), Enabled: r.Enabled, Period: time.Duration(r.PeriodNano),
		CoolDown: time.Duration(r.CoolDownNano), Stability: r.Stability, Moving: r.Moving, MovingTo: int(r.MovingTo),
		Loads: []Load{}, Decisions: []LevelDecision{}}
	for _, e := range r.Loads {
		st.Loads = append(st.Loads, loadOf(e))
	}
	for _, d := range r.Decisions {
		st.Decisions = append(st.Decisions, LevelDecision{First: time.Unix(0, d.FirstUnixNano), Last: time.Unix(0, d.LastUnixNano),
			Count: int(d.Count), Kind: d.Kind, CPID: d.Cpid, From: int(d.From), To: int(d.To), ProcLoad: d.ProcLoad,
			FromLoad: d.FromLoad, ToLoad: d.ToLoad, Reason: d.Reason})
	}
	return st, nil
}
