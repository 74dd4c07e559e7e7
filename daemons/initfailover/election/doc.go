// Package election is initfailover's pure core: which node is the
// cluster's init node, and what this node's initfailover must do about it
// (queue for the init lock, start or stop the singleton services, kill
// them, hand the role over). It is a plain state machine in the shape of
// dlmd's node core: methods take the time as an argument, accumulate
// Actions, and the shell takes them with Ready. It starts no goroutine,
// reads no clock, opens no socket and takes no lock.
//
// # The election
//
// The init node is the holder of one EX lock of dlmd, resource "init" in
// the root-only lockspace "openssi.initfailover". Every node's
// initfailover queues for it; dlmd grants it to one session at a time.
// The lock's 32-byte value block carries a Record: written by a holder
// that hands the role over cleanly (its services stopped), it says so
// (Clean) and may name the node the role goes to (Next). dlmd invalidates
// the value block when a holder's session ends without unlocking (the
// process died, its node was fenced or went DOWN), so a valid, clean
// Record proves the previous init stopped its services.
//
// # At most one copy of a singleton
//
// dlmd's lease (dlmd.lease, L) gives the fencing: a node that loses
// contact with a majority drops its locks at the latest L after its last
// contact, and the survivors grant what it held only after L plus a
// margin has passed since their last contact with it. So when another
// node is granted the init lock, the old init's dlmd has already fenced,
// and its initfailover has been told (Lost). The services still need time
// to stop, so the role's own lease is L + StopTimeout:
//
//   - the old init, told at t0 that its lock is lost, stops its services
//     at once and kills what still runs at t0 + KillAfter (3/4 of
//     StopTimeout), leaving a quarter of StopTimeout for the kill to land;
//   - a new holder granted the lock at t1 >= t0 (+ dlmd's margin) without a
//     clean Record starts the services only at t1 + StopTimeout.
//
// Hence the old copy is gone (killed by t0 + 3/4 StopTimeout) before the
// new one starts (t1 + StopTimeout), partitions included, as long as the
// nodes' clocks run at about the same rate (dlmd's lease assumes it too).
// A holder granted a clean Record (a move, a shutdown) starts at once.

// A node asked to shut down never queues for the lock again, whatever its
// stop began for (a lost lock, a move, its boot): it ends Done once its
// services are down.
//
// # A crash of initfailover itself
//
// When initfailover dies (panic, OOM, watchdog) its dlmd session ends and
// dlmd drops the lock at once, invalidating the value block: the next
// holder starts StopTimeout after its grant, which is no earlier than the
// crash. Nothing of this core runs meanwhile, so the old copy must be
// stopped by other means:
//
//   - systemd: openssi-init.target BindsTo initfailover, so the units
//     PartOf it stop when the daemon dies; with their TimeoutStopSec at
//     most KillAfter(StopTimeout), systemd kills them in time. This is
//     what at-most-one rests on across a crash, including a daemon that
//     never comes back; units listed in initfailover.services must be
//     PartOf the target too.
//   - the restarted daemon: Booting stops whatever runs and kills it
//     KillAfter(StopTimeout) after the boot. That suffices alone only if
//     the daemon crashed while holding the lock and restarted within
//     StopTimeout/8 (the kill lands by crash + restart delay + KillAfter +
//     the kill's own time); otherwise it only bounds how long an unbound
//     copy outlives its role.
//
// # Moving the role
//
// Move(target) makes the init stop its services, then unlock with a
// clean Record naming target (and a move id: the mover's node, its move
// counter and the random nonce of its boot, in the value block's last 8
// bytes, so that the ids of a restarted mover are new). A node other
// than target granted that Record passes it on (unlocks with the same value, queues again) if
// target is UP and it has not passed that move before; the target, or a
// node granted the same move twice (the target did not queue), takes the
// role at once.
package election
