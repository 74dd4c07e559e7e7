// Package migrate is the protocol that moves one process from a source
// vprocd to a target vprocd so that it ends up running in exactly one
// place, as a pure core in the shape of dlmd's node: a [Node] is driven
// by Migrate, Step(now, message), Membership(now, epoch, up), Tick(now)
// and the shell's reports (Frozen, Restored, Locate), and accumulates
// what it wants done ([Ready]: actions on process copies, peer messages,
// the new location of a process, the result of a move). It starts no
// goroutine, reads no clock, opens no socket and takes no lock.
//
// # The parties
//
// A move has a source S (where the process runs), a target T and an
// arbiter A: the process's origin (whose number its cpid carries, and
// which always knows where it is) while the origin is UP, else the
// origin's surrogate (pgroup.Surrogate over the nodes UP), as every node
// computes it from clmsd's view. One node may play several parts; its
// messages to itself are handled inside the core.
//
// # The moves
//
//  1. S freezes the process (Freeze: a CRIU dump, or the cooperative
//     checkpoint of package coop) and, once Frozen, sends T the Image
//     (the shell streams the image or state after it).
//  2. T restores it stopped (Restore: CRIU restore into a fresh PID
//     namespace, or the program started with its state and held) and,
//     once Restored, sends S Confirm (or Refuse with the reason).
//  3. S asks A to Decide: Commit after the confirmation, Abort after a
//     refusal, the target's NODEDOWN or ConfirmTimeout.
//  4. A asks S and T what they know (Query, carrying A's ballot: the
//     epoch and A's node); each answers (Know) and promises to ignore any
//     decision of an older ballot. With the answers A decides, once, and
//     tells both (Decided).
//  5. Commit: S ends its frozen original (End), T resumes its copy and
//     the shell re-plumbs the stdio streams to it (Resume), A records the
//     new location (Ready.Locations, for pgroup's origin table). Abort:
//     S tells T (Abort), T drops its copy and acknowledges (Aborted), and
//     only then S lets the original run on (Thaw); the move's Result
//     says why it failed.
//
// # The commit point
//
// The move commits when its arbiter records Commit (decideArb). Before
// that, the original at S is frozen and T's copy stopped, and neither
// side ever acts on its own: S thaws only on the arbiter's Abort (and,
// normally, T's acknowledgement of it), T resumes only on the arbiter's
// Commit. So the argument for "never two" is that the parties never act
// on different outcomes:
//
//   - One arbiter decides once per ballot, and tells the same outcome to
//     both parties.
//   - A new arbiter (the origin died, or came back as a new vprocd that
//     forgot the move) decides only after every party UP answered its
//     Query, as in Paxos' first phase. A party that had acted answers
//     with what it acted on, and the new arbiter keeps it; a party that
//     had not promises the new ballot, so it will ignore a late decision
//     of the old arbiter. A party acts on a Decided only from the node
//     it believes is the arbiter now, at a ballot not below its promise.
//   - S thaws only after T acknowledged the Abort (T keeps a tombstone
//     and refuses a late image of that move), or T is DOWN. So no copy at
//     T can outlive the original's thaw and later be committed by an
//     arbiter that lost the decision: no rollback either.
//   - A commit with S gone (DOWN, or a new vprocd that lost its frozen
//     original) is made onto T's confirmed copy only if the origin's
//     table (Locate: pgroup's, after the survivors' reports when the
//     origin died) does not put the process on a third node, and a commit
//     updates that table at once. So two stale copies of one process (the
//     targets of moves whose source died before their aborts reached
//     them) are never both resumed. (With S still holding its original,
//     the table is no guide: the process may have moved on through T
//     after a commit S has not heard of, and then S must end its copy.)
//
// And for "at least one": once every node is UP and messages flow, every
// move ends: S retries its Decide and Abort every Retry, a confirmed T
// asks every Retry (asking to commit when S is DOWN), an arbiter queries
// again every Retry and at every membership change. The process then runs
// at exactly one node, unless the node that held its only copy died.
//
// # Failures
//
//	what happens                              outcome
//	T dies (or is cut off) before S has       Abort: S thaws (at once if T is
//	  the confirmation                          DOWN, else after T's ack or AbortWait)
//	T refuses (restore failed, busy)          Abort, with T's reason
//	T dies after confirming, before the       Abort if no other arbiter had asked S
//	  commit is recorded                        before (none can have committed); else
//	                                            Commit, and the process is lost with T
//	T dies after the commit is recorded       S's copy is already ended: the process
//	                                            is lost with T, like any process on a
//	                                            dead node; never resurrected at S
//	S dies before T confirmed                 T discards when its restore ends; the
//	                                            process was at S: lost with it
//	S dies after T confirmed                  T asks to commit: Commit, T runs it and
//	                                            A records it
//	S declared DOWN while alive               as above: S stays frozen (it never thaws
//	                                            without A's Abort) and ends its copy
//	                                            when it hears the Commit
//	A (the origin) dies                       the surrogate queries S and T and decides
//	                                            from what they hold and S's wish
//	a message lost, late or reordered         retries; late images of finished moves
//	                                            are refused (tombstones, one move per
//	                                            cpid at a target)
//
// # What the safety rests on
//
//   - Links lose messages only when an end dies or the link breaks; the
//     core copes with any loss, delay or reordering (the model test drops
//     and reorders freely).
//   - A node DOWN in the arbiter's view, for the recovery of a move it
//     took part in, holds no copy any more: its vprocd restarted or the
//     node died. A vprocd that restarts must end the copies it held
//     frozen or stopped for moves (its new core knows nothing of them;
//     it answers Lost for its old moves), and a node declared DOWN while
//     alive is safe only while the arbiter does not change: with a stable
//     arbiter, S and T act only on its one decision.
//   - The only relaxation is AbortWait: a source whose target stays UP but
//     unreachable thaws after AbortWait without the acknowledgement. The
//     target's copy is then still stopped, and the arbiter's recorded
//     Abort keeps it from running; only if the arbiter and the source both
//     die before the target hears could that copy be committed later (a
//     rollback to the checkpoint, never two at once).
//
// # Cost
//
// From the confirmation to the target's Resume: S's Decide, A's Query to
// both, their answers, A's Decided: two and a half round trips on the
// peer links, a few milliseconds on a LAN, inside the freeze time. Any
// shortcut must keep both parties' answers (and promises) before the
// decision.
//
// # Timeouts
//
// ConfirmTimeout (30s) bounds the wait for the target's confirmation,
// Retry (1s) paces every retry, AbortWait (10s) bounds the frozen wait
// for an Abort's acknowledgement, MaxMoves (16) bounds the moves a node
// takes part in at once as source or target (and 64 times as many as an
// arbiter, decided ones included, kept 10 minutes to answer late
// questions). NextDeadline says when Tick is next needed.
//
// # Tests
//
// Table tests (node_test.go), datadriven scripts of every failure above
// (testdata/scripts, over the in-memory world of network_test.go that
// delivers, drops, reorders, cuts, crashes, restarts, declares nodes DOWN
// and moves a fake clock), a seeded model test (model_test.go: random
// moves, losses, crashes of any node including origins, false DOWNs,
// failed freezes and restores; after every step no process runs twice,
// no move has its source thaw and its target resume, or its source end
// and its target discard; after healing, every process runs exactly once
// unless a crash took a copy), and a fuzz target driving the same world
// from bytes.
package migrate
