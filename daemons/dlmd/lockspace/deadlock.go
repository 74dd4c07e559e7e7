package lockspace

import (
	"slices"
	"sort"
)

// Waiter is a pending request, as deadlock detection names it.
type Waiter struct {
	Resource string
	Key      Key
	// Seq is the request's sequence number on its master: the larger, the
	// younger. A stale Waiter (the request has since ended) is ignored by
	// ApplyVictims.
	Seq  uint64
	Mode Mode
}

// Edge says that the owner of Waiter waits for Holder: Waiter cannot be
// granted until Holder releases or down-converts a lock (directly, or
// through a request queued ahead of Waiter that Holder blocks). Edges from
// every master of a lockspace can be merged and given to FindVictims.
type Edge struct {
	Waiter Waiter
	Holder Owner
}

// WaitEdges returns the wait-for edges of this master's pending requests,
// sorted by resource then queue order. A request waits for the owners of
// the locks whose granted mode conflicts with it, and for everything the
// requests ahead of it wait for (conversions are served in order, and new
// requests only after all conversions and in order). An owner whose request
// is blocked by its own lock waits for itself.
func (ls *Lockspace) WaitEdges() []Edge {
	var edges []Edge
	for _, name := range ls.Resources() {
		res := ls.res[name]
		ahead := map[Owner]bool{}
		visit := func(p *lock) {
			res.holders(func(h *lock) {
				if h != p && !Compatible(h.gr, p.rq) {
					ahead[h.key.Owner] = true
				}
			})
			owners := make([]Owner, 0, len(ahead))
			for o := range ahead {
				owners = append(owners, o)
			}
			slices.SortFunc(owners, cmpOwner)
			w := Waiter{Resource: name, Key: p.key, Seq: p.seq, Mode: p.rq}
			for _, o := range owners {
				edges = append(edges, Edge{Waiter: w, Holder: o})
			}
		}
		for _, p := range res.converting {
			visit(p)
		}
		for _, p := range res.waiting {
			visit(p)
		}
	}
	return edges
}

// younger orders waiters by age, youngest last: by Seq, then owner, id and
// resource, so the choice is the same on every node.
func younger(a, b Waiter) bool {
	if a.Seq != b.Seq {
		return a.Seq > b.Seq
	}
	if a.Key != b.Key {
		return b.Key.Less(a.Key)
	}
	return a.Resource > b.Resource
}

// FindVictims returns the requests to fail so that the wait-for graph given
// by edges (possibly merged from several masters) has no cycle. For every
// strongly connected set of owners that contains a cycle, the youngest
// request on an edge inside the set is chosen; its edges are removed and
// the search repeats until no cycle is left. Victims come round by round,
// youngest first within a round. The result depends only on the
// set of edges, not on their order, so every node computes the same victims.
func FindVictims(edges []Edge) []Waiter {
	type arc struct {
		w Waiter
		h Owner
	}
	live := map[arc]bool{}
	for _, e := range edges {
		live[arc{e.Waiter, e.Holder}] = true
	}
	var victims []Waiter
	for {
		adj := map[Owner][]Owner{}
		var nodes []Owner
		seen := map[Owner]bool{}
		add := func(o Owner) {
			if !seen[o] {
				seen[o] = true
				nodes = append(nodes, o)
			}
		}
		for a := range live {
			add(a.w.Key.Owner)
			add(a.h)
			adj[a.w.Key.Owner] = append(adj[a.w.Key.Owner], a.h)
		}
		slices.SortFunc(nodes, cmpOwner)
		for o := range adj {
			slices.SortFunc(adj[o], cmpOwner)
			adj[o] = slices.Compact(adj[o])
		}
		comp := sccs(nodes, adj)
		// The youngest waiter inside each cyclic component.
		best := map[int]Waiter{}
		for a := range live {
			c := comp[a.w.Key.Owner]
			if c != comp[a.h] || c < 0 {
				continue
			}
			if b, ok := best[c]; !ok || younger(a.w, b) {
				best[c] = a.w
			}
		}
		if len(best) == 0 {
			break
		}
		round := make([]Waiter, 0, len(best))
		for _, w := range best {
			round = append(round, w)
		}
		sort.Slice(round, func(i, j int) bool { return younger(round[i], round[j]) })
		for _, w := range round {
			victims = append(victims, w)
			for a := range live {
				if a.w == w {
					delete(live, a)
				}
			}
		}
	}
	return victims
}

// sccs labels each owner with its strongly connected component (Tarjan),
// or -1 when the component has no cycle (a single owner without a
// self-edge).
func sccs(nodes []Owner, adj map[Owner][]Owner) map[Owner]int {
	index := map[Owner]int{}
	low := map[Owner]int{}
	on := map[Owner]bool{}
	comp := map[Owner]int{}
	var stack []Owner
	next, ncomp := 0, 0
	var visit func(v Owner)
	visit = func(v Owner) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		on[v] = true
		for _, w := range adj[v] {
			if _, ok := index[w]; !ok {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if on[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var members []Owner
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			on[w] = false
			members = append(members, w)
			if w == v {
				break
			}
		}
		cyclic := len(members) > 1 || slices.Contains(adj[v], v)
		for _, w := range members {
			if cyclic {
				comp[w] = ncomp
			} else {
				comp[w] = -1
			}
		}
		ncomp++
	}
	for _, v := range nodes {
		if _, ok := index[v]; !ok {
			visit(v)
		}
	}
	return comp
}

// ApplyVictims refuses with ErrDeadlock the victims that are pending here
// (same resource, lock and sequence number) and grants what they blocked.
// Victims of other masters and stale ones are ignored.
func (ls *Lockspace) ApplyVictims(victims []Waiter) []Effect {
	var effs []Effect
	touched := map[*resource]bool{}
	for _, v := range victims {
		l := ls.locks[v.Key]
		if l == nil || l.state == granted || l.res.name != v.Resource || l.seq != v.Seq {
			continue
		}
		touched[l.res] = true
		effs = append(effs, ls.refuse(l, ErrDeadlock))
	}
	return append(effs, ls.processAll(touched)...)
}

// DetectDeadlocks runs deadlock detection on this master alone: it is
// ApplyVictims(FindVictims(WaitEdges())). The shell calls it on a timer (the
// VMS deadlock wait); for detection across masters it merges WaitEdges of
// every master instead and calls FindVictims once.
func (ls *Lockspace) DetectDeadlocks() []Effect {
	return ls.ApplyVictims(FindVictims(ls.WaitEdges()))
}
