package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestErrorForUnlistedKey(t *testing.T) {
	e := newWhole(nil).invalid("no.such", "v")
	if got, want := e.Error(), `config: no.such: "v" is not valid: want a valid value`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestHelpers(t *testing.T) {
	if got := oneLine("a\n\n  b  \n"); got != "a; b" {
		t.Errorf("oneLine = %q", got)
	}
	for _, tt := range []struct {
		in   any
		want int
		ok   bool
	}{
		{int64(5), 5, true}, {uint64(6), 6, true}, {float64(7), 7, true}, {" 8 ", 8, true},
		{uint64(math.MaxUint64), 0, false}, {1.5, 0, false}, {true, 0, false}, {"0x10", 0, false},
	} {
		got, ok := toInt(tt.in)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("toInt(%v) = %d, %v", tt.in, got, ok)
		}
	}
	if _, err := decodeHook(nil, reflect.TypeOf(""), map[string]any{}); err == nil {
		t.Error("decodeHook(map -> string) succeeded")
	}
	if got, err := decodeHook(nil, reflect.TypeOf(time.Duration(0)), time.Second); err != nil || got != time.Second {
		t.Errorf("decodeHook(Duration) = %v, %v", got, err)
	}
	if format(nil) != "" || format(3) != "3" {
		t.Error("format")
	}
	if lineOf(nil, "a") != math.MaxInt32 {
		t.Error("lineOf(nil)")
	}
	if findErrorLine([]byte(strings.Repeat("a: 1\n", 1001)), "x") != 0 {
		t.Error("findErrorLine on a long file")
	}
}

// TestClusterWants: every shared setting says what it accepts.
func TestClusterWants(t *testing.T) {
	for key, want := range newWhole(nil).allowed {
		if !strings.HasPrefix(want, "want ") || want == "want a valid value" {
			t.Errorf("%s has no want tag", key)
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aa bb cc dd", "# ", "#   ", 8)
	if want := "# aa bb\n#   cc\n#   dd"; got != want {
		t.Errorf("wrap = %q, want %q", got, want)
	}
}
