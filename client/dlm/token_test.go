package dlm

import (
	"testing"

	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// TestToken follows a lock's fencing token through the completions dlmd
// sends: a grant in PW or EX brings one, a refused conversion keeps the
// lock's, a grant in a weaker mode has none.
func TestToken(t *testing.T) {
	l := &Lock{done: make(chan result, 1)}
	for i, s := range []struct {
		c    *dlmv1.Completion
		mode Mode
		want uint64
	}{
		{&dlmv1.Completion{Granted: true, Mode: dlmv1.Mode_MODE_EX, Token: 7}, EX, 7},
		{&dlmv1.Completion{Granted: true, Mode: dlmv1.Mode_MODE_PW, Token: 7}, PW, 7},
		{&dlmv1.Completion{Mode: dlmv1.Mode_MODE_PW, Held: true, Status: dlmv1.Status_STATUS_WOULD_BLOCK}, PW, 7},
		{&dlmv1.Completion{Granted: true, Mode: dlmv1.Mode_MODE_PR}, PR, 0},
		{&dlmv1.Completion{Granted: true, Mode: dlmv1.Mode_MODE_EX, Token: 1<<40 + 3}, EX, 1<<40 + 3},
	} {
		l.complete(s.c)
		l.settle(<-l.done)
		if l.Mode() != s.mode || l.Token() != s.want {
			t.Fatalf("step %d: mode %v token %d, want %v %d", i, l.Mode(), l.Token(), s.mode, s.want)
		}
	}
}
