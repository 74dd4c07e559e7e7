package node

import "fmt"

// Check verifies the Node's invariants: every lock table is sound, and
// every copy is filed under its id, owned by this node, and belongs to an
// open session or is an orphan. Tests call it after each step.
func (n *Node) Check() error {
	for _, name := range sortedKeys(n.tables) {
		if err := n.tables[name].Check(); err != nil {
			return fmt.Errorf("node %d: lockspace %s: %w", n.self, name, err)
		}
	}
	for id, cl := range n.locks {
		if cl.key.ID != id || uint32(cl.key.Owner.Node) != n.self {
			return fmt.Errorf("node %d: copy of lock %d has key %v", n.self, id, cl.key)
		}
		if cl.sess == nil && !cl.orphan {
			return fmt.Errorf("node %d: copy of lock %d has no session and is not an orphan", n.self, id)
		}
	}
	if err := n.checkCounts(); err != nil {
		return fmt.Errorf("node %d: %w", n.self, err)
	}
	return nil
}
