// Package cpid is the cluster PID of vprocd: one positive int32 that
// names a process uniquely in the whole cluster and from which the node it
// was started on (its origin) can be read, as OpenSSI put the node number
// in the high bits of a pid:
//
//	cpid = node<<22 | pid      node 1..511, pid 1..2^22-1
//
// 22 bits hold any Linux pid (2^22 is the kernel's PID_MAX_LIMIT on 64-bit
// systems, which systemd raises kernel.pid_max to), and the 9 bits left
// below the sign bit hold node numbers 1..511. A cpid is printed as its
// decimal value, e.g. node 2's pid 1234 is 8389842 (Make(2, 1234)); a
// process group is given to kill as -CPGID, as kill(1) takes -PGID
// (ParseTarget).
//
// # The origin and a cpid's life
//
// A plain process of node N has the cpid Make(N, pid). A process that
// `ssi exec` starts on another node takes its cpid from its origin, the
// node it was started from: Make(origin, pid of the process standing for it
// there), so the origin's kernel cannot hand the number out again while the
// process lives. A process keeps its cpid for its whole life, wherever it
// runs (the migration issue builds on this): its pid on the node where it
// runs is not part of its cpid, and the origin node, or while the origin
// is DOWN its surrogate (package pgroup), always knows where the process
// runs now and under which local pid. So nothing may read "where does it
// run" from a cpid: Node is where to ask, not where the process is.
//
// Node numbers above 511 (clmsd allows up to 1024) cannot be origins: Make
// refuses them.
//
// # API
//
//	c, err := cpid.Make(node, pid)  // errors on node 0 or >511, pid <1 or >2^22-1
//	c.Node(), c.PID()               // the origin node and the pid part
//	c.String()                      // decimal, "8389842"
//	c, err := cpid.Parse("8389842") // strict decimal; errors wrap ErrSyntax, ErrRange, ErrNode or ErrPID
//	t, err := cpid.ParseTarget("-8389842") // t.Group: a process group (kill -CPGID)
//	t.String()                      // "-8389842" for a group
package cpid
