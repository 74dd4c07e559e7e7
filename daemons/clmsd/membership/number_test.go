package membership

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestChooseNumber(t *testing.T) {
	claims := map[int]Claim{
		1: {Name: "alpha", Address: "10.0.0.1"},
		2: {Name: "beta", Address: "10.0.0.2"},
		4: {Name: "delta", Address: "10.0.0.4"},
	}
	tests := []struct {
		name string
		req  NumberRequest
		want int
		err  error
		msg  string
	}{
		{"auto takes the lowest free", NumberRequest{Self: "new", Claims: claims}, 3, nil, ""},
		{"auto on an empty cluster", NumberRequest{Self: "new"}, 1, nil, ""},
		{"auto reuses a claim under our name", NumberRequest{Self: "delta", Claims: claims}, 4, nil, ""},
		{"stored number kept", NumberRequest{Self: "beta", Stored: 2, Claims: claims, Live: set(2)}, 2, nil, ""},
		{"configured wins over stored", NumberRequest{Self: "beta", Configured: 7, Stored: 2, Claims: claims}, 7, nil, ""},
		{"configured number of a live node", NumberRequest{Self: "new", Configured: 2, Claims: claims, Live: set(1, 2)}, 0, ErrNumberInUse,
			`node number 2 (from clmsd.node_number) is held by live node "beta" at 10.0.0.2`},
		{"stored number of a live node", NumberRequest{Self: "new", Stored: 1, Claims: claims, Live: set(1)}, 0, ErrNumberInUse, "from the state file"},
		{"configured number of a dead node is taken over", NumberRequest{Self: "new", Configured: 2, Claims: claims, Live: set(1)}, 2, nil, ""},
		{"configured out of range", NumberRequest{Self: "x", Configured: MaxNodeNumber + 1}, 0, nil, "out of range"},
		{"stored negative", NumberRequest{Self: "x", Stored: -1}, 0, nil, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseNumber(tt.req)
			if tt.msg != "" || tt.err != nil {
				if err == nil || !strings.Contains(err.Error(), tt.msg) || (tt.err != nil && !errors.Is(err, tt.err)) {
					t.Fatalf("err %v, want %v containing %q", err, tt.err, tt.msg)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d %v, want %d", got, err, tt.want)
			}
		})
	}
	full := map[int]Claim{}
	for n := 1; n <= MaxNodeNumber; n++ {
		full[n] = Claim{Name: "other"}
	}
	if _, err := ChooseNumber(NumberRequest{Self: "x", Claims: full}); !errors.Is(err, ErrNoFreeNumber) {
		t.Fatalf("full: %v", err)
	}
}

func TestParseStoredNumber(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"", 0, true}, {"  \n", 0, true}, {"3\n", 3, true}, {" 511 ", 511, true},
		{"0", 0, false}, {"512", 0, false}, {"-2", 0, false}, {"x", 0, false},
		{strings.Repeat("9", 100), 0, false},
	}
	for _, tt := range tests {
		got, err := ParseStoredNumber([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%q: %d %v", tt.in, got, err)
		}
	}
}

func TestParseNumberKey(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"openssi/clms/alive/3", 3}, {"7", 7}, {"a/b/511", 511},
		{"a/b/0", 0}, {"a/b/03", 0}, {"a/b/", 0}, {"a/b/+3", 0}, {"a/b/x", 0}, {"a/512", 0},
	}
	for _, tt := range tests {
		got, err := ParseNumberKey(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("%q: accepted as %d", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %d %v", tt.in, got, err)
		}
	}
}

func FuzzParseStoredNumber(f *testing.F) {
	f.Add([]byte("3\n"))
	f.Add([]byte(""))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseStoredNumber(b)
		if err == nil && (n < 0 || n > MaxNodeNumber) {
			t.Fatalf("accepted %d", n)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

func FuzzParseNumberKey(f *testing.F) {
	f.Add("openssi/clms/alive/3")
	f.Add("x/")
	f.Fuzz(func(t *testing.T, k string) {
		n, err := ParseNumberKey(k)
		if err == nil && (n < 1 || n > MaxNodeNumber) {
			t.Fatalf("accepted %d", n)
		}
	})
}

func TestSkew(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// Peer 50ms ahead, 10ms each way, 2ms processing.
	s := ClockSample{T0: at(0), T1: at(0).Add(ms(60)), T2: at(0).Add(ms(62)), T3: at(0).Add(ms(22))}
	off, d := s.Offset()
	if off != ms(50) || d != ms(20) {
		t.Fatalf("offset %v delay %v", off, d)
	}
	tr := NewSkewTracker(3, ms(100))
	if _, ok := tr.Get(2); ok {
		t.Fatal("estimate without samples")
	}
	// An asymmetric slow sample (offset off by 40ms) then a fast one: the fast one wins.
	tr.Add(2, ClockSample{T0: at(0), T1: at(0).Add(ms(150)), T2: at(0).Add(ms(150)), T3: at(0).Add(ms(120))})
	tr.Add(2, s)
	got, ok := tr.Get(2)
	if !ok || got.Offset != ms(50) || got.Delay != ms(20) || got.Warn {
		t.Fatalf("estimate %+v", got)
	}
	// Window of 3: after three slow samples the fast one is gone.
	late := ClockSample{T0: at(0), T1: at(0).Add(ms(-200)), T2: at(0).Add(ms(-200)), T3: at(0).Add(ms(100))}
	for i := 0; i < 3; i++ {
		tr.Add(2, late)
	}
	got, _ = tr.Get(2)
	if got.Offset != ms(-250) || !got.Warn {
		t.Fatalf("after window: %+v", got)
	}
	if tr.Add(2, ClockSample{T0: at(0), T1: at(5), T2: at(5), T3: at(-1)}) {
		t.Fatal("negative delay sample kept")
	}
	tr.Forget(2)
	if _, ok := tr.Get(2); ok {
		t.Fatal("forgotten peer still known")
	}
	if NewSkewTracker(0, 0).Window != 1 {
		t.Fatal("window floor")
	}
}
