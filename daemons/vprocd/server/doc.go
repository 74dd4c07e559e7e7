// Package server is vprocd's shell: its local API on the node's socket
// (the caller's identity from SO_PEERCRED), its peer service over mutual
// TLS, and the remote exec between them. A caller's exec runs here when it
// names this node, else it is forwarded to the target node's vprocd with
// the caller's uid, gid and groups; the target believes them only from the
// certificate of the caller's node's vprocd. Programs start through
// package runner.
package server
