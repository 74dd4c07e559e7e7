// Package proctable reads one node's processes into the rows of `ssi ps`,
// `ssi top` and /cluster/proc, pure: it reads files through an fs.FS rooted
// at /proc (os.DirFS("/proc") in vprocd, fstest.MapFS of captured samples in
// tests), starts no goroutine and reads no clock.
//
// A Row is one process: its cluster pid (cpid.Make(node, pid)), its parent
// as a cpid of the same node (0 for pid 1 and the kernel threads' parent),
// the effective uid and gid, the STAT letters of ps, %CPU, RSS, START, the
// CPU time and its argv (nil for a kernel thread, which ps shows as
// [comm]).
//
// # %CPU
//
// Two figures, as ps and top give them:
//
//   - Row.CPU, set by Reader.Snapshot, is ps's lifetime average: the CPU
//     time used divided by the wall time since the process started (the
//     node's /proc/uptime less its start), in percent of one CPU. It needs
//     one read, so `ssi ps` over every node costs one round trip.
//   - TopCPU recomputes it as top does from two snapshots of the same node:
//     the CPU time a process used between them over the time between them
//     (Snapshot.Uptime of each, the node's own monotonic clock, so neither
//     clock skew between nodes nor the fetch's latency distorts it).
//     `ssi top` keeps the previous snapshot of each node for this.
//
// Both can exceed 100 for a multithreaded process, as in ps and top.
//
// # Reading
//
//	r := proctable.Reader{FS: os.DirFS("/proc"), Node: self}
//	snap, err := r.Snapshot()          // every process; vanished ones skipped
//	files, err := r.Files(pid)         // raw stat, status, cmdline, environ
//	rows := proctable.Filter{UIDs: []uint32{1000}}.Apply(snap.Rows)
//	proctable.SortByCPU(rows)          // top's order
//
// The parsers (ParseStat, ParseStatus, ParseCmdline, ParseBtime,
// ParseUptime) read text a process can partly choose (its comm, its argv)
// and are fuzzed.
package proctable
