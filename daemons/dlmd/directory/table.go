package directory

// Key names a resource: its lockspace and its name.
type Key struct {
	Lockspace, Resource string
}

// Table is a directory node's part of the resource directory: the master
// of each resource that has one, for the resources whose directory node
// (Master over the members) it is. Mastering goes to the first requester,
// as in fs/dlm: Lookup of a resource nobody masters makes the asking node
// its master, and the entry stays until that master gives the resource
// up (Remove) or a recovery replaces the table (Set).
//
// The table also keeps the fencing-token floor of the resources it
// directs: the highest last token of any resource whose master gave it up
// here (Remove). A node that becomes a master by Lookup grants tokens above
// it, so a resource given up and mastered again never grants a token it
// granted before. One number, not one per resource: the floor only grows,
// and tokens need only grow, not be consecutive.
type Table struct {
	masters map[Key]NodeID
	floor   uint64
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{masters: map[Key]NodeID{}} }

// Lookup returns the master of k, making from the master when k has none.
func (t *Table) Lookup(k Key, from NodeID) NodeID {
	if m, ok := t.masters[k]; ok {
		return m
	}
	t.masters[k] = from
	return from
}

// Remove drops k's entry when from is its master: a master gives up only
// what it masters, with token, the last fencing token it granted on k
// (which raises TokenFloor). It reports whether the entry went.
func (t *Table) Remove(k Key, from NodeID, token uint64) bool {
	if m, ok := t.masters[k]; !ok || m != from {
		return false
	}
	delete(t.masters, k)
	t.floor = max(t.floor, token)
	return true
}

// TokenFloor is the highest fencing token of the resources given up here:
// a node that Lookup makes a master grants tokens above it.
func (t *Table) TokenFloor() uint64 { return t.floor }

// Set records k's master (a recovery registering what survived or moved).
// It reports false, keeping the first, when k already has another master:
// two nodes claimed the same resource, which the recovery must not allow.
func (t *Table) Set(k Key, master NodeID) bool {
	if m, ok := t.masters[k]; ok && m != master {
		return false
	}
	t.masters[k] = master
	return true
}

// Master returns k's master, if it has one.
func (t *Table) Master(k Key) (NodeID, bool) {
	m, ok := t.masters[k]
	return m, ok
}

// Len returns the number of entries.
func (t *Table) Len() int { return len(t.masters) }
