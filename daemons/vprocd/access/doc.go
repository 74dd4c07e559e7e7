// Package access is vprocd's permission rule for acting on a process of
// the cluster, the rule kill(2) and setpriority(2) apply on one machine
// without capabilities: root (uid 0) may signal and renice any process; any
// other user only processes of their own uid, and may only raise a nice
// value (lower the priority), never lower it. The uids are the same on
// every node (one administrative domain, as in OpenSSI), so the rule is
// the same wherever the process runs.
//
// The caller's uid is the one its vprocd read with SO_PEERCRED from the
// local socket, carried over mutual TLS to the node where the process
// runs; the owner is the process's real uid there, read at the moment of
// acting (not from a record that may be stale). vprocd runs as root, so it
// must ask this package before every signal and renice it carries out.
//
// # API
//
//	err := access.Signal(callerUID, ownerUID, cpid)            // nil: allowed
//	err := access.Migrate(callerUID, ownerUID, cpid)           // ssi migrate: as Signal
//	err := access.Renice(callerUID, ownerUID, cpid, cur, want) // nice values -20..19
//	errors.Is(err, access.ErrPermission)                       // also errors.Is(err, syscall.EPERM)
//	errors.Is(err, access.ErrNice)                             // want outside -20..19
package access
