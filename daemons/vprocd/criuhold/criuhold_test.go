package criuhold

import (
	"math"
	"strconv"
	"testing"
)

func TestNumbers(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 4194305, -1, -42, math.MaxInt64, math.MinInt64 + 1} {
		if got := itoa(n); got != strconv.Itoa(n) {
			t.Errorf("itoa(%d) = %q", n, got)
		}
	}
	for _, c := range []struct {
		s  string
		n  int
		ok bool
	}{{"0", 0, true}, {"42", 42, true}, {"999999999", 999999999, true}, {"1000000000", 0, false},
		{"", 0, false}, {"-1", 0, false}, {"4 ", 0, false}, {"x", 0, false}} {
		if n, ok := atoi(c.s); n != c.n || ok != c.ok {
			t.Errorf("atoi(%q) = %d, %v; want %d, %v", c.s, n, ok, c.n, c.ok)
		}
	}
}

func TestLastLine(t *testing.T) {
	long := string(make([]byte, 300))
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"one", "one"},
		{"a\nb\n", "b"},
		{"a\n  Error (criu/cr-restore.c:1): x  \n\n", "Error (criu/cr-restore.c:1): x"},
		{"a\n" + long, long[:200] + "..."},
	} {
		if got := lastLine(c.in); got != c.want {
			t.Errorf("lastLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestArgs(t *testing.T) {
	got := Args("/run/p", 2, []string{"/usr/sbin/criu", "restore"})
	want := []string{"/run/p", "2", "/usr/sbin/criu", "restore"}
	if len(got) != len(want) {
		t.Fatalf("Args = %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Args = %q, want %q", got, want)
		}
	}
}
