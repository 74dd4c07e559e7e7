package proctable

import (
	"os"
	"testing"
	"testing/fstest"
	"time"
)

func TestParseSchedstat(t *testing.T) {
	for _, tc := range []struct {
		in        string
		run, wait time.Duration
		ok        bool
	}{
		{"241600415 125445896 2038\n", 241600415, 125445896, true},
		{"0 0 1", 0, 0, true},
		{"1 2", 0, 0, false},
		{"1 2 3 4", 0, 0, false},
		{"-1 2 3", 0, 0, false},
		{"+1 2 3", 0, 0, false},
		{"1 x 3", 0, 0, false},
		{"99999999999999999999 1 1", 0, 0, false},
	} {
		run, wait, err := ParseSchedstat([]byte(tc.in))
		if (err == nil) != tc.ok || run != tc.run || wait != tc.wait {
			t.Errorf("ParseSchedstat(%q) = %v, %v, %v; want %v, %v, ok %v", tc.in, run, wait, err, tc.run, tc.wait, tc.ok)
		}
	}
}

func TestBusy(t *testing.T) {
	fsys := sampleFS()
	// Two threads: ran 1.5s and waited 0.5s in all.
	fsys["7710/task/7710/schedstat"] = &fstest.MapFile{Data: []byte("1000000000 250000000 10\n")}
	fsys["7710/task/7712/schedstat"] = &fstest.MapFile{Data: []byte("500000000 250000000 4\n")}
	start, busy, err := Reader{FS: fsys}.Busy(7710)
	if err != nil || start != 1213674 || busy != 2*time.Second {
		t.Fatalf("Busy(7710) = %v, %v, %v; want 1213674, 2s", start, busy, err)
	}
	// A kernel without schedstat: its CPU time (250+50 ticks).
	fsys = sampleFS()
	fsys["7710/task/7710/stat"] = &fstest.MapFile{Data: []byte(stat7710)}
	if start, busy, err = (Reader{FS: fsys}).Busy(7710); err != nil || start != 1213674 || busy != 3*time.Second {
		t.Fatalf("Busy(7710) without schedstat = %v, %v, %v; want 1213674, 3s", start, busy, err)
	}
	// A bad schedstat, a process gone.
	fsys["7710/task/7710/schedstat"] = &fstest.MapFile{Data: []byte("x")}
	if _, _, err := (Reader{FS: fsys}).Busy(7710); err == nil {
		t.Error("a bad schedstat: no error")
	}
	if _, _, err := (Reader{FS: fsys}).Busy(31337); !Gone(err) {
		t.Errorf("a process gone: %v", err)
	}
}

// TestBusyHere reads this test process in the real /proc.
func TestBusyHere(t *testing.T) {
	r := Reader{FS: os.DirFS("/proc")}
	start, busy, err := r.Busy(int32(os.Getpid()))
	if err != nil || start == 0 || busy <= 0 {
		t.Fatalf("Busy(self) = %v, %v, %v", start, busy, err)
	}
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	start2, busy2, err := r.Busy(int32(os.Getpid()))
	if err != nil || start2 != start || busy2 < busy+10*time.Millisecond {
		t.Errorf("after 20ms of spinning: %v, %v, %v (before: %v)", start2, busy2, err, busy)
	}
}
