// Package server is vprocd's shell: its local API on the node's socket
// (the caller's identity from SO_PEERCRED), its peer service over mutual
// TLS, and the remote exec between them. A caller's exec runs here when it
// names this node, else it is forwarded to the target node's vprocd with
// the caller's uid, gid and groups; the target believes them only from the
// certificate of the caller's node's vprocd. Programs start through
// package runner.
//
// A remote program is named by the cpid its origin gives it (package
// cpid) and recorded on both nodes in package pgroup's core (procs.go),
// which says which node answers for a cpid (its origin, or a DOWN
// origin's surrogate) and where it runs. kill and renice (signal.go) ask
// that node and act where the process runs, whose vprocd checks the
// caller against the process's real owner (package access). A group kill
// goes to every UP node, each signaling the members that run on it. When
// the origin's link breaks without a word that the caller left, the
// target waits for the origin's NODEDOWN before deciding (origin.go).
//
// A program started migratable (ExecRequest.migratable, `ssi exec
// --migratable`) gets a checkpoint socket of its own (cooplink.go, the
// protocol of package coop) and is always relayed by its caller's vprocd
// through the peer service, even when it runs there. `ssi migrate`
// (migrate.go) is routed like a kill to the node it runs on, which checks
// the caller against its owner and drives package migrate's core: the
// shell checkpoints it, streams its state to the target, which starts the
// same executable as the same caller and restores it, and the core's
// arbiter decides. When the move commits, the old copy is ended, its exec
// stream ends with Moved once its output is drained, and the caller's
// vprocd attaches to the new copy (moved.go), sending it again the stdin
// the old one had not taken (movestdin.go): one output stream, one stdin,
// the same cpid, the exit status of the copy. The programs held for a
// move are marked on disk so that a restarted vprocd ends them (held.go).
package server
