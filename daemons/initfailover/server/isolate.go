package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
)

// maxIsolateWalk bounds the units a target's check reads (a node has a
// few hundred).
const maxIsolateWalk = 4096

// checkIsolate checks that this node's systemd may isolate target: it is
// loaded, has AllowIsolate=yes and, unless force, pulls in every unit of
// initfailoverspec.IsolateKeeps, so the node stays in the cluster. The
// error is one line, for ssi isolate to show.
func checkIsolate(ctx context.Context, sd Systemd, target string, force bool) error {
	d, err := sd.Deps(ctx, target)
	if err != nil {
		return err
	}
	if !d.AllowIsolate {
		return fmt.Errorf("%s has AllowIsolate=no: systemd isolates only targets that allow it", target)
	}
	if force {
		return nil
	}
	pulled, err := pulls(ctx, sd, target, d)
	if err != nil {
		return err
	}
	if missing := missingKeeps(pulled); len(missing) > 0 {
		return fmt.Errorf("%s does not pull in %s: isolating it would take the node out of the cluster (add Wants=%s to it, or --force)",
			target, strings.Join(missing, " and "), strings.Join(missing, " "))
	}
	return nil
}

// pulls returns every unit a start of target pulls in, transitively
// (target included): the units an isolate to it keeps.
func pulls(ctx context.Context, sd Systemd, target string, d UnitDeps) (map[string]bool, error) {
	seen := map[string]bool{target: true}
	queue := slices.Clone(d.Pulls)
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if seen[u] {
			continue
		}
		if len(seen) >= maxIsolateWalk {
			return nil, fmt.Errorf("%s pulls in more than %d units: not checked", target, maxIsolateWalk)
		}
		seen[u] = true
		ud, err := sd.Deps(ctx, u)
		if errors.Is(err, ErrNoUnit) {
			continue // a Wants= of a unit that does not exist
		}
		if err != nil {
			return nil, err
		}
		queue = append(queue, ud.Pulls...)
	}
	return seen, nil
}

// missingKeeps lists the units of initfailoverspec.IsolateKeeps not in
// pulled.
func missingKeeps(pulled map[string]bool) []string {
	var out []string
	for _, k := range initfailoverspec.IsolateKeeps {
		if !pulled[k] {
			out = append(out, k)
		}
	}
	return out
}
