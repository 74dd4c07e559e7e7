package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/consul"
)

// Consul KV keys, relative to the openssi/ prefix.
const (
	keyPrefix  = "clms/"
	keyView    = "clms/view"
	keyNodes   = "clms/nodes/"
	keyAlive   = "clms/alive/"
	keyLeaving = "clms/leaving/"
)

// snapshot is the clms/ subtree read at one Consul index.
type snapshot struct {
	index     uint64
	view      membership.View
	viewIndex uint64 // ModifyIndex of clms/view, 0 when absent
	observed  membership.Observed
	claims    map[int]membership.Claim
	claimIdx  map[int]uint64
	live      map[int]bool
	holders   map[int]string // session holding clms/alive/<n>
	problems  []string       // undecodable keys, reported and skipped
}

// parseSnapshot decodes a listing of the clms/ subtree (keys relative to
// the openssi/ prefix). Values come from Consul and are outside input: a
// key that does not decode is reported in problems and skipped, never
// fatal, except a view that does not validate, which is an error because
// writing a successor to it would lose history.
func parseSnapshot(entries []consul.Entry, index uint64) (snapshot, error) {
	s := snapshot{
		index:    index,
		observed: membership.Observed{Alive: map[int]membership.Presence{}, Holders: map[int]string{}, Leaving: map[int]bool{}},
		claims:   map[int]membership.Claim{},
		claimIdx: map[int]uint64{},
		live:     map[int]bool{},
		holders:  map[int]string{},
	}
	for _, p := range entries {
		key := p.Key
		switch {
		case key == keyView:
			if err := json.Unmarshal(p.Value, &s.view); err != nil {
				return s, fmt.Errorf("clmsd: decode %s: %w", key, err)
			}
			if err := s.view.Validate(); err != nil {
				return s, fmt.Errorf("clmsd: %s: %w", key, err)
			}
			s.viewIndex = p.ModifyIndex
		case strings.HasPrefix(key, keyAlive):
			n, err := membership.ParseNumberKey(key)
			if err != nil {
				s.problems = append(s.problems, err.Error())
				continue
			}
			if p.Session == "" {
				continue
			}
			var c membership.Claim
			if err := json.Unmarshal(p.Value, &c); err != nil {
				s.problems = append(s.problems, fmt.Sprintf("decode %s: %v", p.Key, err))
			}
			s.observed.Alive[n] = membership.Presence{Name: c.Name, Address: c.Address, Session: p.Session}
			s.observed.Holders[n] = p.Session
			s.live[n] = true
			s.holders[n] = p.Session
		case strings.HasPrefix(key, keyLeaving):
			n, err := membership.ParseNumberKey(key)
			if err != nil {
				s.problems = append(s.problems, err.Error())
				continue
			}
			s.observed.Leaving[n] = true
		case strings.HasPrefix(key, keyNodes):
			n, err := membership.ParseNumberKey(key)
			if err != nil {
				s.problems = append(s.problems, err.Error())
				continue
			}
			var c membership.Claim
			if err := json.Unmarshal(p.Value, &c); err != nil {
				s.problems = append(s.problems, fmt.Sprintf("decode %s: %v", p.Key, err))
				continue
			}
			s.claims[n] = c
			s.claimIdx[n] = p.ModifyIndex
		}
	}
	return s, nil
}

// list reads the clms/ subtree, as a blocking query on w.
func (s *Server) list(ctx context.Context, w consul.Wait) (snapshot, error) {
	entries, index, err := s.kv.List(ctx, keyPrefix, w)
	if err != nil {
		return snapshot{}, err
	}
	return parseSnapshot(entries, index)
}
