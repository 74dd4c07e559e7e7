// Package level is the load leveler's decision, pure: given each node's load
// vector (load.Vector, the one vprocd measures and exchanges), the
// registered, migratable processes with their own load and last move, and
// the time, [Decide] returns at most one migration (process, from, to) and
// says why, or says why none. It starts no goroutine, reads no clock and
// moves nothing: the shell calls it once per balancing period, carries the
// move out (vprocd's migrate) and records its time in the process's Proc.
//
// # The rule (openMosix / Kerrighed)
//
// A node's load is its run queue per CPU, as placement scores it
// (load.Vector.PerCPU: the unrounded average where the vector has it), corrected for moves its vector does not show yet
// (see Staleness). A process's load is the CPU it uses, in runnable tasks
// (1 for a CPU-bound single thread; the shell measures it from the
// process's CPU time over the last period). Decide considers the sources
// from the most loaded down (only Self when set) and, for each, the peers
// from the least loaded up. For a source A clearly above a peer B (by more
// than Margin per CPU) it takes, among A's processes that may move, the one
// that leaves A and B closest to each other, and moves it only when
//
//	load(B) + Stability × load(p) / min(CPUs(A), CPUs(B))  <  load(A)
//
// Stability is 1.3 by default, as in Kerrighed. A process that moved less
// than CoolDown ago stays put, and processes under MinLoad (idle ones,
// whose move would change nothing) are not considered.
//
// # Why it cannot thrash
//
// With x the per-CPU loads and c the CPUs, the quantity Σ c·x² falls with
// every move the rule allows, by at least 2·(Stability−1)·load(p)²/min(c):
// moving p from A to B changes it by 2·load(p)·(x_B − x_A) +
// load(p)²·(1/c_A + 1/c_B), and the rule makes x_A − x_B larger than
// Stability·load(p)/min(c_A, c_B). So, while the loads are what the vectors
// say, no sequence of moves returns to a state it left (no ping-pong, not
// even through third nodes) and balancing stops after finitely many moves;
// in particular the move straight back (B to A) is never allowed. The
// cool-down adds a bound in time for what the vectors do not show (a
// process whose own load changes).
//
// # Staleness
//
// A node's vector is a second or more old when it is read. A process whose
// LastMove is after the At of a vector is not counted in it yet: Decide adds
// its load to its current node and takes it off the node it left (From).
// So several moves within one period (several nodes deciding, each once)
// see each other, and a node does not move a second process to a peer
// whose vector does not show the first yet. The correction is exact while a
// process moves at most once within a vector's age, which the cool-down
// (20s) ensures against the window's MaxAge (8s): the simulation in the
// tests makes the same moves from vectors 8s old as from fresh ones.
// Vectors' At come from each node's clock and LastMove from the deciding
// node's: the correction assumes clocks kept within a period of each other
// (NTP).
//
// # Use
//
//	every balancing period, on each node:
//		d := level.Decide(level.Config{}, level.Input{Now: now, Self: self, Nodes: vectors, Procs: registered})
//		if d.Move { migrate d.Proc from d.From to d.To; on success set its LastMove = now, From = d.From }
//		record d.Reason for `ssi loadlevel status`
//
// # The shell's helpers
//
// A Tracker turns the processes the shell finds each period (Candidate:
// registered, movable, with a Sample of /proc) into Decide's Procs: a
// process's load is its busy time between two samples (Rate), the moves
// this node made stay listed on their new node for the staleness
// correction, the arrivals carry their LastMove (the cool-down), and a
// process whose move failed is not tried again within the cool-down. A
// History keeps the last decisions (32), folding a run of the same answer
// into one entry, for `ssi loadlevel status`. Steady smooths this node's
// own vector: a run queue counted at one instant includes tasks that just
// woke, and since only this node's processes move, a rise must be seen in
// two readings a period apart before it moves anything (a fall counts at
// once).
//
// With Self 0, Decide takes the global view instead (any node may be the
// source): the simulation in the tests and a single decider use it.
package level
