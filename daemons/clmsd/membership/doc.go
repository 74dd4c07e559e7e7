// Package membership is clmsd's pure core: the cluster membership view, the
// rule that turns what Consul shows into membership events, which gossip
// failures to trust and when to rejoin ([Gossip], [NextRejoin]),
// node-number choice and clock-offset estimation. Nothing here has goroutines, sockets,
// clocks or Consul calls; the shell (package clmsd/server) reads one
// consistent snapshot of Consul, feeds it to Reconcile, and writes the result
// back with a check-and-set, so every clmsd computes the same next view and
// exactly one write wins.
//
// The caller's loop looks like this:
//
//	for {
//		snap := readSnapshot()                  // view + alive + leaving keys at one index
//		next, events := membership.Reconcile(snap.View, snap.Observed, maxEvents)
//		if len(events) > 0 {
//			casWrite(next, snap.ViewIndex)      // losing the race is fine: re-read
//		}
//		deliver(next)                           // to local subscribers, by epoch
//	}
//
// What a NODEDOWN means here: the node's Consul session was invalidated
// because Consul's gossip declared its agent failed. A node whose clmsd alone
// crashed keeps its session (the restarted clmsd adopts it), so a daemon
// restart is not a node failure. A graceful leave first writes a leave marker,
// so the node's disappearance is reported as NODELEAVE, not NODEDOWN.
package membership
