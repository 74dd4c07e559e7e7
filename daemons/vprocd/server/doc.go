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
package server
