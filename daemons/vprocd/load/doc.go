// Package load is vprocd's load information, pure: the load vector a node
// measures once a second, the parsers of the /proc texts it is measured
// from, and the MOSIX-style exchange and placement of a Window. It starts
// no goroutine, reads no clock or file and opens no socket: the shell reads
// /proc, passes the time and a random source in, and sends what Tick says.
//
// # Exchange
//
// Each second every vprocd measures its vector and sends it to ONE peer
// chosen uniformly at random among the UP nodes (MOSIX's probabilistic
// dissemination), and keeps the freshest vectors it has heard, at most
// Size (8) nodes, each for at most MaxAge (8s) after it was heard. So no
// node ever polls all others, a node's vector reaches a given peer every
// N-1 seconds on average, and what a node believes of the cluster is
// bounded and recent. A vector older (by its sender's At) than the one
// kept of that node is ignored; a node DOWN is dropped at once.
//
// # Placement
//
// Place (`ssi exec --auto`, and programs registered for load leveling)
// chooses among this node and the window the node with the lowest score,
// the runnable tasks per CPU counting the caller's own placements not yet
// reflected in a vector (in flight), with a stability margin: see Place for
// the exact rule. Counting in-flight placements is what spreads a burst of
// jobs (30 jobs over 3 equal nodes land 10 on each) rather than sending
// all of them to the node that looked idlest a second ago.
//
// # The shell's loop
//
//	w := load.New(load.Config{Self: self})
//	w.Members(upNodes)                       // then w.Membership(node, up) on each change
//	r := rand.New(rand.NewPCG(seed1, seed2)) // math/rand/v2
//	every second:
//		v, err := load.Measure(self, now, read("/proc/loadavg"), read("/proc/stat"), read("/proc/meminfo"))
//		w.Measured(now, v)
//		if to, v, ok := w.Tick(now, r); ok { send v to node to's vprocd }
//	on a peer's vector:  err := w.Heard(now, v)   // log err (rate-limited)
//	on `ssi exec --auto`: node, err := w.Place(now, nil)
//	`ssi nodes -o load`:  w.Vectors(now)           // []Entry: vector, heard, in flight, score
//
// The parsers (ParseLoadavg, ParseStat, ParseMeminfo) read outside text
// and are fuzzed; a peer's vector is checked by Heard.
package load
