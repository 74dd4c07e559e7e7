package criu

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Version is a CRIU release: Major.Minor.Sublevel ("4.2.1"; "4.0" has
// Sublevel 0).
type Version struct {
	Major, Minor, Sublevel int
}

// MinVersion is the oldest CRIU migration uses.
var MinVersion = Version{Major: 4, Minor: 2}

// maxComponent bounds each number of a version read from outside.
const maxComponent = 9999

// String is "4.2.1" (or "4.0" when Sublevel is 0 and was not given; both
// parse back to the same Version).
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Sublevel)
}

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Sublevel < w.Sublevel
}

// ParseVersion reads what `criu --version` prints: a line
// "Version: 4.2.1" (two or three numbers), possibly followed by a
// "GitID: ..." line of a build from git. The Version line must be the first
// non-empty line.
func ParseVersion(out []byte) (Version, error) {
	var first []byte
	for line := range bytes.Lines(out) {
		if l := bytes.TrimSpace(line); len(l) > 0 {
			first = l
			break
		}
	}
	rest, ok := bytes.CutPrefix(first, []byte("Version:"))
	if !ok {
		return Version{}, fmt.Errorf("criu: --version printed %q, want a line \"Version: X.Y.Z\"", clip(first))
	}
	s := strings.TrimSpace(string(rest))
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("criu: version %q is not X.Y or X.Y.Z", clip([]byte(s)))
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > maxComponent || p != strconv.Itoa(v) {
			return Version{}, fmt.Errorf("criu: version %q is not X.Y or X.Y.Z", clip([]byte(s)))
		}
		n[i] = v
	}
	return Version{Major: n[0], Minor: n[1], Sublevel: n[2]}, nil
}

// clip shortens outside text quoted in an error.
func clip(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
