// Package server is clmsd's shell: it claims this node's number, holds the
// node's membership session in Consul, runs the reconcile loop that feeds
// Consul's state to the pure core in package membership and writes the next
// view back with a check-and-set, serves the local Membership API to
// libcluster and `ssi`, answers peers' clock probes and measures clock
// offsets to every other node.
//
// Keys under the openssi/ prefix of Consul's KV store:
//
//	clms/nodes/<n>    permanent claim of node number n ({name, address})
//	clms/alive/<n>    held by node n's session; deleted when the session is
//	                  invalidated (the node's agent failed) or destroyed
//	clms/leaving/<n>  written before a graceful leave, removed on start
//	clms/view         the membership view: epoch, members, recent events
package server
