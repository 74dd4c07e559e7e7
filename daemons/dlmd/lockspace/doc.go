// Package lockspace is dlmd's pure core: the lock table of a VMS-style
// distributed lock manager (OpenVMS, OpenDLM, Linux fs/dlm) for one
// lockspace on one master. It has no goroutines, sockets, clocks or Consul
// calls: the shell passes the time in and carries out the effects each call
// returns, the way etcd's raft separates Step/Ready from I/O.
//
// # Semantics
//
// Six modes NL, CR, CW, PR, PW, EX with the standard compatibility matrix
// (Compatible). Each resource (a name of up to 64 bytes) has a granted
// queue, a conversion queue and a wait queue. Conversions are served before
// new requests and in order; new requests are granted in order, a waiting
// request blocking later compatible ones behind it (no starvation). A
// down-conversion is granted at once. An up-conversion compatible with the
// granted locks is granted at once unless QueCvt asks it to queue behind the
// conversions already waiting. NoQueue refuses instead of waiting; a request
// Timeout is enforced by Tick. Each resource has a 32-byte value block:
// read on grants in PR, PW or EX with ValBlk, written by a down-conversion
// or unlock from PW or EX with ValBlk, marked not valid when a PW or EX
// holder dies. A blocked request makes the core send a blocking AST to each
// holder in its way, once per mode wanted while the holder keeps blocking
// it. Deadlocks are found on a wait-for graph of owners (WaitEdges,
// FindVictims): the youngest request of each cycle is refused. A conversion
// deadlock (two converters each blocking the other) is refused at once, as
// VMS and fs/dlm do.
//
// # The shell's loop
//
// The shell owns one Lockspace per lockspace for the resources this node
// masters (the first node to ask for a resource masters it; see package
// directory), and serializes all calls to it:
//
//	ls, err := lockspace.New(name, lockspace.Config{UID: uid, GID: gid}, creatorCred)
//	for {
//		var effs []lockspace.Effect
//		select {
//		case req := <-lockRequests: // from a local client or a peer dlmd
//			effs, err = ls.Lock(time.Now(), req.Cred, req.Request)
//			reply(req, err) // a synchronous error: nothing was queued
//		case req := <-convertRequests:
//			effs, err = ls.Convert(time.Now(), req.Request)
//			reply(req, err)
//		case req := <-unlockRequests:
//			effs, err = ls.Unlock(req.Owner, req.ID, req.Flags, req.LVB)
//			reply(req, err)
//		case req := <-cancelRequests:
//			effs, err = ls.Cancel(req.Owner, req.ID)
//			reply(req, err)
//		case <-timer.C: // armed from ls.NextDeadline()
//			effs = ls.Tick(time.Now())
//		case <-deadlockTicker.C: // the VMS deadlock wait
//			effs = ls.DetectDeadlocks() // or the cross-node variant below
//		case o := <-processExits: // a client's socket closed
//			effs = ls.OwnerExit(o)
//		case ev := <-clmsdEvents: // NODEDOWN, by epoch
//			effs = ls.DropNode(ev.Node)
//		}
//		for _, e := range effs {
//			switch e.Kind {
//			case lockspace.Granted, lockspace.Refused:
//				sendCompletionAST(e.Key.Owner, e) // to the owner's node, then its process
//			case lockspace.Blocking:
//				sendBlockingAST(e.Key.Owner, e)
//			}
//		}
//		resetTimer(ls.NextDeadline())
//	}
//
// Effects are ordered and each names the lock (Key: owner and id) and
// resource; a shell delivers them in order per owner. Every accepted Lock or
// Convert request ends with exactly one Granted or Refused effect, unless
// its owner exits or its node is dropped first.
//
// Deadlocks across masters use the same code: every master sends its
// WaitEdges to a coordinator (say the lowest-numbered member); the
// coordinator calls FindVictims on the merged edges and sends the victims to
// every master, each of which calls ApplyVictims (victims it does not hold,
// or that have since been granted, are ignored). FindVictims depends only on
// the set of edges, so any node computes the same victims.
//
// # Recovery and NODEDOWN
//
// When clmsd reports a node down, each master calls DropNode(node). Every
// lock of an owner on that node is removed, whatever its state:
//
//   - granted locks: released; what they blocked is granted. If one was
//     held in PW or EX, the resource's value block is marked not valid (the
//     dead holder may have changed the data it protects); the next grants
//     with ValBlk say so, until a PW or EX holder writes it.
//   - converting locks: the conversion and the lock go; the mode they held
//     counts as above for the value block.
//   - waiting requests: dropped, no effect.
//   - persistent locks and orphans of that node: dropped too, as OpenDLM
//     and fs/dlm do: nothing on a dead node can adopt them.
//
// No effect is addressed to the dead node's owners. Locks of other nodes
// are untouched. A process that exits on a live node is handled by
// OwnerExit the same way, except that its Persistent locks that hold a mode
// stay granted as orphans (their pending conversion, if any, is dropped),
// until PurgeOrphans or an Unlock removes them.
//
// When the master of a resource itself dies, the resource moves to a new
// master (the hash over the remaining members): each survivor hands it the
// copies of its own locks on the resource (as Dump/NodeLocks describe them,
// kept from the effects it received), and the new master calls Rebuild.
// Granted modes are kept, pending requests are queued in their old order
// (by sequence number) with their deadlines, the dead node's locks are
// simply absent, and the value block is recovered from a copy granted in
// PR, PW or EX, else marked not valid. Incompatible granted copies are an
// invariant violation (ErrIncompatibleCopies). Blocking ASTs are re-sent.
//
// A resource with no locks is forgotten with its value block, as in VMS.
//
// # Fencing tokens
//
// Every grant of PW or EX, a new lock or an up-conversion, carries a
// fencing token (Effect.Token): the next number of the resource's counter.
// A conversion down from EX to PW keeps the lock's token; weaker modes have
// none. A storage system that keeps the highest token it has seen and
// refuses lower ones thereby refuses a holder that was paused while its
// lock went to another. The counter outlives the resource's locks for as
// long as the shell keeps it (ForgetToken when the resource is given up);
// across masters the shell carries it: RaiseToken sets the floor of a
// resource a table starts mastering, and Rebuild keeps the copies' tokens
// and counts on above them (daemons/dlmd/node says which floor makes
// tokens grow across re-mastering).
package lockspace
