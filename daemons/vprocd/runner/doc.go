// Package runner starts a program for a remote-exec caller on this node:
// with exactly the caller's uid, gid and supplementary groups, its
// environment, its directory (or its home when that directory is not
// here), in a process group of its own or on a pseudo-terminal, and
// reports how it ended the way a shell does (128+N for signal N, 127 for a
// command not found, 126 for one that cannot be executed). It talks to the
// kernel only; vprocd's server decides what to run and streams the stdio.
package runner
