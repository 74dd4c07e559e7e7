// Package directory is dlmd's pure resource directory and recovery rules:
// which node is a resource's directory node (rendezvous hashing over the
// members of a membership epoch), the directory table a directory node
// keeps (Table: first-requester mastering, as in fs/dlm), and the
// decisions of the recovery that runs on every membership change (which
// resources move, whose locks are lost, when the barrier is complete).
// Nothing here has goroutines, sockets or clocks; the protocol core
// (daemons/dlmd/node) follows the decisions.
//
// # Masters
//
// The master of a resource is the first node that asked for it: a node
// that does not know a resource's master asks its directory node (Master
// over the members), whose Table makes the asking node the master when
// the resource has none. The master keeps the resource while it has locks
// and for a while after, then gives it up (Table.Remove), and the next
// requester masters it. A resource used from one node is therefore
// mastered there and its locks need no network.
//
// # The rule for NODEUP, NODEDOWN and NODELEAVE
//
// Every change of the set of UP nodes runs the same recovery:
//
//  1. Every dlmd stops granting and tells every member "stopped at
//     (epoch, round)" on the channel it uses for requests, after the
//     requests it sent; each master acknowledges after the replies and
//     effects it sent. When a node holds the acknowledgement of every
//     member, every request it sent has an answer and every effect for its
//     owners has arrived: its copies of its own locks are exact.
//  2. Every node learns from the acknowledgements every member's last
//     completed recovery and incarnation, and all compute the same Plan.
//     A resource moves only when its master is lost (down, left, or its
//     dlmd restarted); its new master is the hash winner among the new
//     members (Plan.NewMaster), so nobody has to ask. A node that joins
//     takes over nothing. Each node sends the copies of its locks on
//     moving resources to their new masters and, since the directory
//     nodes change with the members, registers with each resource's new
//     directory node the master of every resource it masters and of every
//     moving resource it holds a lock on; then "copies done".
//  3. A master that has "copies done" from every member drops the locks
//     of lost nodes on the resources it keeps (lockspace.DropNode),
//     rebuilds the resources it gained (lockspace.Rebuild), installs the
//     new directory table and resumes granting.
//
// If the members do not agree on the last completed recovery (a recovery
// was cut short by another membership change on some nodes only), the
// Plan is Full: every resource moves, every table is rebuilt from copies.
// That is always correct; the value blocks then survive only where a
// holder in PR or stronger saw them.
package directory

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// NodeID is a node number.
type NodeID = uint32

// Master returns the master of resource in lockspace among members (the
// highest rendezvous weight; ties, which need a 64-bit collision, go to the
// lower node number). It returns 0 when members is empty.
func Master(members []NodeID, lockspace, resource string) NodeID {
	var best NodeID
	var bestW uint64
	for _, n := range members {
		w := Weight(n, lockspace, resource)
		if best == 0 || w > bestW || w == bestW && n < best {
			best, bestW = n, w
		}
	}
	return best
}

// Weight is the rendezvous (HRW) weight of node for a resource: a 64-bit
// FNV-1a hash of the names and node number, finished with the splitmix64
// mixer so that close inputs spread.
func Weight(node NodeID, lockspace, resource string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(lockspace))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(resource))
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], node)
	_, _ = h.Write(b[:])
	return mix(h.Sum64())
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Sorted returns the members sorted and without duplicates.
func Sorted(members []NodeID) []NodeID {
	out := slices.Clone(members)
	slices.Sort(out)
	return slices.Compact(out)
}
