package criu

import (
	"bytes"
	"fmt"
)

// ParseCheck reads what `criu check` printed (stdout and stderr together)
// and its exit status: it passed when the status is 0 and a line starts
// with "Looks good". Otherwise the error says why: CRIU's first "Error"
// line when there is one, else its last line.
func ParseCheck(out []byte, status int) error {
	var firstErr, last []byte
	good := false
	for line := range bytes.Lines(out) {
		l := bytes.TrimSpace(line)
		if len(l) == 0 {
			continue
		}
		last = l
		if bytes.HasPrefix(l, []byte("Looks good")) {
			good = true
		}
		if firstErr == nil && bytes.HasPrefix(l, []byte("Error")) {
			firstErr = l
		}
	}
	switch {
	case status == 0 && good:
		return nil
	case firstErr != nil:
		return fmt.Errorf("criu: check failed (status %d): %s", status, clip(firstErr))
	case last != nil:
		return fmt.Errorf("criu: check failed (status %d): %s", status, clip(last))
	default:
		return fmt.Errorf("criu: check failed (status %d) and printed nothing", status)
	}
}
