// Package pgroup is vprocd's bookkeeping of cluster processes, as a pure
// state machine in the shape of dlmd's node core: a Core is driven by
// Step(now, event) and Tick(now), and accumulates what to send to which
// peer, which signals to deliver, which waiting execs to end and what to
// answer, for the shell to take with Ready. It starts no goroutine, reads
// no clock, opens no socket and takes no lock.
//
// # What each node keeps
//
// A process started through vprocd (`ssi exec`, client/vproc) is recorded
// (Proc) by its origin, the node it was started from, whose number its
// cpid carries (package cpid), and by the node where it runs:
//
//   - the origin's table: its processes wherever they run (where, under
//     which pid, its cluster process group and session, its uid, whether
//     its `ssi exec` had a terminal, whether one waits for it);
//   - the local table: the processes that run on this node, whatever
//     their origin.
//
// The shell steps Started on both nodes (one may be both) and Ended where
// the process ran; the core then tells the origin (Ready.Sends). Started
// refuses a cpid that has a live record (ErrInUse: the pid part was
// reused on the origin while a detached process lives on) and, on the
// origin, a target that is no longer UP (ErrDown). A plain
// process (not started through vprocd) has no record: its cpid is
// cpid.Make(node, pid) and a lookup at its node answers Local.
//
// # Finding a process: origin, else surrogate
//
// Route(cpid) is where a lookup or a kill goes: the cpid's origin while it
// is UP, else the origin's surrogate, Surrogate(origin, UP nodes): the UP
// node with the highest hash of (origin, node), which every node computes
// alike from the same membership. A node asked about a cpid it does not
// answer for says where to ask (Answer.Redirect); the shell forwards.
//
// When an origin goes DOWN, every survivor sends the surrogate a Report
// (Ready.Sends) of what it runs of that origin (maybe nothing), and again
// to a new surrogate when the surrogate goes DOWN, and a fresh one when one
// of those processes ends. The surrogate holds a lookup or kill of that
// origin until every survivor that was UP when the origin died has
// reported, at most Config.Wait (2s; Tick, NextDeadline), so a process is
// never called unknown because a report is on the way. When the origin
// comes back UP (a new vprocd), the survivors hand its processes back to
// it (a Report to the origin) and the surrogate forgets them.
//
// # Failures
//
//   - The node a process runs on goes DOWN: the process is lost; if an
//     `ssi exec` waits for it on the origin, Ready.Exits ends it with
//     status 255 and one line naming the node and cpid, at the NODEDOWN.
//   - The origin goes DOWN: its processes elsewhere keep running, as
//     nohup would decide: one whose `ssi exec` had a terminal on the origin
//     (Proc.TTY) gets SIGHUP (to its process group on its node), the
//     others nothing. No exec waits for them any more (Detached).
//
// The shell must not treat a stream broken by the origin's death as a
// client gone (which kills the remote process): it leaves the decision to
// this core's NODEDOWN handling.
//
// # Process groups across nodes
//
// A process's cluster process group (Proc.PGID) is the cpid of its
// `ssi exec`'s process group on the origin, Make(origin, getpgid), and its
// session likewise, so the remote members of a shell's job form one group
// with the job's local processes. `ssi kill -- -CPGID` is sent to EVERY UP
// node's vprocd (Kill with Target.Group); each signals the members that
// run on it, so every member is reached exactly once wherever its origin
// is, and the group's origin signals its local process group (which holds
// the `ssi exec`s). A signal a waiting `ssi exec` forwards
// (Config.Forwarded: HUP INT QUIT TERM) reaches its remote process through
// that exec: the remote node leaves it to the exec instead of delivering
// it twice. GroupResult turns the summed answers into the kill's outcome.
//
// # Permissions
//
// Kill checks access.Signal(caller, record's uid) and answers a refusal;
// every Signal in Ready carries the caller's uid, and the node that
// delivers it checks again against the real owner of each process it
// signals (a record can be stale, a pid reused). Caller 0 on a SIGHUP is
// the core's own decision.
//
// # The shell's loop
//
//	c := pgroup.New(pgroup.Config{Self: self})
//	c.Start(epoch, upNodes)
//	loop:
//		err := c.Step(now, pgroup.Started{Proc: p})      // exec confirmed (origin) / spawned (target)
//		c.Step(now, pgroup.Ended{CPID: x, Node: n})      // exited here, or told by the target
//		c.Step(now, pgroup.NodeDown{Epoch: e, Node: n})  // clmsd events, in order
//		c.Step(now, pgroup.NodeUp{Epoch: e, Node: n})
//		err := c.Step(now, report)                       // a peer's Report (check err: a bad one)
//		c.Step(now, pgroup.Lookup{ID: id, CPID: x})      // ps/strace/...: where is x
//		c.Step(now, pgroup.Kill{ID: id, Caller: uid, Target: t, Signal: sig})
//		c.Tick(now)                                      // at c.NextDeadline()
//		rd := c.Ready()
//		rd.Sends:   to the peer vprocd (Report or Ended)
//		rd.Signals: deliver on s.Node (here, or via its vprocd), checking access
//		rd.Exits:   end the waiting exec of e.CPID: print e.Reason, exit e.Status
//		rd.Answers: reply to request a.ID, or forward it to a.Redirect
//
// What vprocd's shell (daemons/vprocd/server) uses today: Started, Ended,
// NodeDown/NodeUp, Report and Lookup, and of Ready the Sends, the Signals
// (the SIGHUP of a dead origin's terminal-attached programs) and the
// Answers. It routes kills and renices itself from Lookup answers and
// checks access.Signal/Renice where the process runs (signal.go), and its
// exec stream ends a waiting exec with 255 at the target's NODEDOWN on its
// own: the core's Kill event, GroupResult and Ready.Exits are tested here
// but not wired yet.
package pgroup
