package cfsmount

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FSType is the file system type of a mount in /proc/self/mountinfo.
const FSType = "fuse.cfs"

// Detach lazily unmounts every cfs mount on dir (umount -l), as a cfsd
// must before it mounts there: one found there was left by a cfsd that
// died or by a mount that failed half-way, and nobody serves it.
func Detach(dir string) error {
	for range 16 { // mounts stack; a few at most
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		if !MountedAt(string(b), dir) {
			return nil
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the dead cfs mount on %s: %w", dir, err)
		}
	}
	return fmt.Errorf("detach the dead cfs mounts on %s: more than 16", dir)
}

// MountedAt says whether a mountinfo text has a cfs mount on dir.
func MountedAt(mountinfo, dir string) bool {
	for line := range strings.SplitSeq(mountinfo, "\n") {
		// id parent major:minor root mountpoint options ... - fstype source super
		f := strings.Fields(line)
		if len(f) < 5 || unescape(f[4]) != dir {
			continue
		}
		for i, x := range f {
			if x == "-" && i+1 < len(f) && f[i+1] == FSType {
				return true
			}
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
