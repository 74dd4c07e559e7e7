// Package criu finds CRIU (Checkpoint/Restore In Userspace) on a node and
// says whether process migration can use it: the binary, its version (4.2
// or later: bookworm's 3.17 fails `criu check` on current kernels, 4.1.1
// hangs in dump at the parasite stage, and kernels from 6.16 on need 4.2's
// socket-option fix for processes with inet sockets) and whether
// `criu check` passes. vprocd runs [Detect] at start and shows the [State]
// in `ssi status`; where it is not [Ready], only programs that checkpoint
// themselves (the cooperative path) can move.
//
// The parsers ([ParseVersion], [ParseCheck]) are pure and read what the
// binary printed; running it is behind [Runner] ([Exec] runs real
// processes), so Detect is tested without CRIU. [DumpArgs] and
// [RestoreArgs] are the command lines of a dump and of a detached restore,
// and [InFreshPIDNamespace] wraps a restore so that it runs in a new PID
// namespace: a restore recreates the process with its PID, and on the
// host that PID may still be taken (an unreaped zombie, a reused PID:
// "Can't fork for PID: File exists"); in a fresh namespace it is free.
//
// The pinned CRIU is built by build/criu/build.sh (`make criu`); the
// round-trip test of this package runs it when CRIU_BIN names it.
package criu
