package election

import "time"

// The Elector's own lease on its local dlmd. dlmd tells a session that it
// lost its locks, but a dlmd that is frozen (SIGSTOP, hung) while its node
// lives tells nobody: its peers fence its locks once its lease has run
// out and grant the role elsewhere, while the holder keeps its services
// running. So while it holds the lock the shell probes its session
// (dlm.Client.Ping, answered by dlmd's event loop without asking another
// node) every ProbeEvery, notes when the last answer's probe was sent, and
// treats the lock as lost (Core.Lost) once LeaseExpired.
//
// The bound, with L the cluster's dlmd.lease and S the stop timeout: a
// dlmd that answered a probe sent at A was running at A and pinged its
// peers no earlier than A - L/10 (it pings every L/10); its peers grant
// what it held no earlier than its last pong + L + L/10 (their margin),
// so no earlier than A + L. The new holder was not handed the lock
// cleanly, so it starts the services S after its grant: not before
// A + L + S. Expiring at A + L, this holder stops them then and kills
// what still runs at A + L + KillAfter(S) = A + L + 3S/4: S/4 before
// the new holder may start them, the same slack as a holder that dlmd
// tells of its fencing (told at most L after its last pong, killing
// 3S/4 later).
//
// Why it does not flap: dlmd's loop answers a Ping in microseconds, and
// the shell sends a probe every ProbeEvery without waiting for the
// previous answer, so the role is dropped only when dlmd takes longer
// than the lease less a probe period (0.9 s of the default 1 s) to
// answer: dlmd stalled for most of a lease. A dlmd that stalls that long
// misses its own pings too and is about to be fenced by its peers anyway
// (and fences itself at its next tick), so the probe drops the role only
// where dlmd's lease would have.

// DefaultDlmLease is dlmd.lease's default (dlmdspec), the lease the
// Elector assumes when not told the cluster's.
const DefaultDlmLease = time.Second

// ProbeEvery is how often a holder probes its dlmd session: a tenth of
// the lease, dlmd's own ping period.
func ProbeEvery(lease time.Duration) time.Duration { return max(lease/10, 10*time.Millisecond) }

// LeaseEnd is when a holder whose dlmd last answered a probe sent at
// lastAnswer must treat its lock as lost (see above for the bound).
func LeaseEnd(lastAnswer time.Time, lease time.Duration) time.Time { return lastAnswer.Add(lease) }

// LeaseExpired reports whether, at now, no probe answered since
// lastAnswer (the send time of the last answered probe, or the grant)
// still covers the lock.
func LeaseExpired(lastAnswer, now time.Time, lease time.Duration) bool {
	return !now.Before(LeaseEnd(lastAnswer, lease))
}
