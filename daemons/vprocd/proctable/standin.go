package proctable

import "github.com/openssi/openssi/daemons/vprocd/cpid"

// WithoutStandIns drops, from the rows of several nodes, the stand-ins of
// remote programs: a program `ssi exec` started on another node is named
// by the cpid of the `ssi exec` that stands for it on its origin (its
// row's Node is not its cpid's node), so the two share a cpid, and the
// program's row is the one kept. The order of the rows kept is unchanged.
func WithoutStandIns(rows []Row) []Row {
	remote := map[cpid.CPID]bool{}
	for _, r := range rows {
		if r.Node != r.CPID.Node() {
			remote[r.CPID] = true
		}
	}
	if len(remote) == 0 {
		return rows
	}
	out := rows[:0:0]
	for _, r := range rows {
		if r.Node == r.CPID.Node() && remote[r.CPID] {
			continue
		}
		out = append(out, r)
	}
	return out
}
