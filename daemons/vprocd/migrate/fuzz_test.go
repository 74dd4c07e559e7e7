package migrate

import (
	"testing"
)

// bytesChooser answers from a fuzzer's bytes, then zeros.
type bytesChooser struct {
	b []byte
	i int
}

func (c *bytesChooser) IntN(n int) int {
	if c.i >= len(c.b) {
		return 0
	}
	v := int(c.b[c.i])
	if c.i+1 < len(c.b) {
		v = v<<8 | int(c.b[c.i+1])
	}
	c.i += 2
	return v % n
}

// FuzzWorld drives the model from the fuzzer's bytes: the same steps as
// TestModel (moves, deliveries in any order, losses, cuts, crashes,
// restarts, DOWN and UP, failed jobs, the clock), with the same
// invariants after every step and after settling.
func FuzzWorld(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 60, 0, 0, 0, 60, 0, 80})
	f.Add([]byte{0, 5, 0, 2, 0, 40, 0, 90, 0, 92, 0, 96, 0, 40, 0, 80})
	f.Add([]byte("migrate and crash everything in turn, then heal"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		crashOrigins := len(b) > 0 && b[0]&1 == 1
		runChoices(t, &bytesChooser{b: b}, crashOrigins, len(b)/2, false)
	})
}
