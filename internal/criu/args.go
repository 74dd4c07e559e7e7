package criu

import (
	"strconv"
)

// DumpArgs is the command line (after the binary) that checkpoints the
// process tree rooted at pid into the images directory dir and ends it,
// logging to dump.log there. A process on a terminal needs shellJob
// (--shell-job); one whose standard streams are pipes or files does not.
func DumpArgs(pid int, dir string, shellJob bool) []string {
	a := []string{"dump", "--tree", strconv.Itoa(pid), "--images-dir", dir, "--log-file", "dump.log"}
	if shellJob {
		a = append(a, "--shell-job")
	}
	return a
}

// RestoreArgs is the command line (after the binary) that restores the
// images in dir and detaches from the restored tree (--restore-detached),
// writing its root's PID (as seen in the restoring namespace) to pidfile,
// which must not exist yet (CRIU creates it with O_EXCL and fails the
// restore otherwise), and logging to restore.log in dir.
func RestoreArgs(dir, pidfile string, shellJob bool) []string {
	a := []string{"restore", "--restore-detached", "--images-dir", dir, "--log-file", "restore.log", "--pidfile", pidfile}
	if shellJob {
		a = append(a, "--shell-job")
	}
	return a
}

// InFreshPIDNamespace returns the program and arguments that run
// `bin restoreArgs...` in a new PID (and mount, for its /proc) namespace
// through unshare(1), under a /bin/sh that is the namespace's init: it runs
// the restore, writes the restore's exit status to statusFile (whole, by a
// rename) and, when it succeeded, stays (exec sleep) as the parent of the
// detached, restored tree, which lives as long as it does. Killing it (PID 1 of the namespace) ends the
// whole namespace. So the restored process gets its own PID back even when
// that PID is taken on the host.
func InFreshPIDNamespace(bin string, restoreArgs []string, statusFile string) (string, []string) {
	// "$0" is bin, "$1" the status file, the rest the restore's
	// arguments: nothing is interpolated into the script.
	const script = `bin="$0"; st="$1"; shift; "$bin" "$@"; s=$?; echo $s > "$st.tmp" && mv "$st.tmp" "$st"; [ $s = 0 ] && exec sleep infinity; exit $s`
	args := []string{"--pid", "--fork", "--mount-proc", "--", "/bin/sh", "-c", script, bin, statusFile}
	return "unshare", append(args, restoreArgs...)
}
