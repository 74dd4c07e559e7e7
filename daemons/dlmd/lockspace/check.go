package lockspace

import (
	"fmt"
	"slices"
)

// Check verifies the core's invariants and returns the first violation:
// every lock is on exactly the queue its state names; no two granted modes
// on a resource conflict; a pending conversion is an up-conversion; the
// queues are in request order; nothing that could be granted is left
// waiting (the head of the conversion queue, or of the wait queue when no
// conversion waits, is blocked); every holder that blocks a pending request
// was sent a blocking AST for its mode; the indexes agree. Tests call it
// after every step; a shell may call it in debug builds.
func (ls *Lockspace) Check() error {
	n := 0
	for name, res := range ls.res {
		if res.name != name {
			return fmt.Errorf("resource %q filed as %q", res.name, name)
		}
		if res.empty() {
			return fmt.Errorf("resource %q: empty but kept", name)
		}
		for _, s := range []state{granted, converting, waiting} {
			var prev uint64
			for i, l := range *res.queue(s) {
				n++
				if l.res != res || l.state != s || ls.locks[l.key] != l || ls.owners[l.key.Owner][l.key.ID] != l {
					return fmt.Errorf("resource %q: lock %v misfiled", name, l.key)
				}
				if s != granted {
					if i > 0 && l.seq <= prev {
						return fmt.Errorf("resource %q: %v queue out of order at %v", name, LockState(s), l.key)
					}
					prev = l.seq
					if !l.rq.Valid() || l.orphan {
						return fmt.Errorf("resource %q: pending %v: mode %v orphan %v", name, l.key, l.rq, l.orphan)
					}
					if (ls.timed[l.key] == l) == l.deadline.IsZero() {
						return fmt.Errorf("resource %q: %v: deadline index", name, l.key)
					}
				} else if l.rq != 0 || !l.deadline.IsZero() || ls.timed[l.key] != nil {
					return fmt.Errorf("resource %q: granted %v still has a request", name, l.key)
				}
				if s != waiting && !l.gr.Valid() {
					return fmt.Errorf("resource %q: %v holds mode %v", name, l.key, l.gr)
				}
				if s == converting && l.gr.Covers(l.rq) {
					return fmt.Errorf("resource %q: %v queued a down-conversion %v->%v", name, l.key, l.gr, l.rq)
				}
				if s != waiting && l.gr != PW && l.gr != EX && l.token != 0 || l.token > ls.tokens[name] {
					return fmt.Errorf("resource %q: %v holds %v with token %d (counter %d)", name, l.key, l.gr, l.token, ls.tokens[name])
				}
				if l.orphan && !l.persistent {
					return fmt.Errorf("resource %q: %v orphan not persistent", name, l.key)
				}
			}
		}
		var hs []*lock
		res.holders(func(h *lock) { hs = append(hs, h) })
		for i, a := range hs {
			for _, b := range hs[:i] {
				if !Compatible(a.gr, b.gr) {
					return fmt.Errorf("resource %q: %v holds %v and %v holds %v", name, b.key, b.gr, a.key, a.gr)
				}
			}
		}
		if len(res.converting) > 0 {
			if c := res.converting[0]; res.compatible(c, c.rq) {
				return fmt.Errorf("resource %q: conversion %v could be granted", name, c.key)
			}
		} else if len(res.waiting) > 0 {
			if w := res.waiting[0]; res.compatible(w, w.rq) {
				return fmt.Errorf("resource %q: request %v could be granted", name, w.key)
			}
		}
		for _, h := range hs {
			var want uint8
			for _, p := range slices.Concat(res.converting, res.waiting) {
				if h != p && !h.orphan && !Compatible(h.gr, p.rq) {
					want |= bit(p.rq)
				}
			}
			if h.basts != want {
				return fmt.Errorf("resource %q: %v blocks modes %08b, was told %08b", name, h.key, want, h.basts)
			}
		}
	}
	if n != len(ls.locks) {
		return fmt.Errorf("%d locks indexed, %d queued", len(ls.locks), n)
	}
	m := 0
	for o, om := range ls.owners {
		if len(om) == 0 {
			return fmt.Errorf("owner %v: empty index", o)
		}
		m += len(om)
	}
	if m != n {
		return fmt.Errorf("%d locks by owner, %d queued", m, n)
	}
	for k, l := range ls.timed {
		if ls.locks[k] != l || l.state == granted {
			return fmt.Errorf("timed %v not pending", k)
		}
	}
	return nil
}
