package proctable

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Stat
		err  string
	}{
		{name: "pid 1", in: stat1, want: Stat{PID: 1, Comm: "process_api", State: 'S', TPGid: -1, Flags: 4194560, UTime: 785, STime: 5347, Threads: 13, StartTime: 24}},
		{name: "kernel thread", in: stat2, want: Stat{PID: 2, Comm: "kthreadd", State: 'S', TPGid: -1, Flags: 2129984, Threads: 1, StartTime: 24}},
		{name: "negative nice", in: stat4, want: Stat{PID: 4, Comm: "kworker/R-rcu_gp", State: 'I', PPID: 2, TPGid: -1, Flags: 69238880, Nice: -20, Threads: 1, StartTime: 24}},
		{name: "terminal", in: stat6250, want: Stat{PID: 6250, Comm: "agetty", State: 'S', PPID: 6129, PGrp: 6250, Session: 6250, TTY: 34816, TPGid: 6250, Flags: 4194560, Threads: 1, StartTime: 1210798}},
		{name: "comm with spaces and parentheses", in: stat7710, want: Stat{PID: 7710, Comm: "a) b (c", State: 'R', PPID: 7708, PGrp: 7708, Session: 32408, TPGid: -1, Flags: 4194304, UTime: 250, STime: 50, Nice: 5, Threads: 1, StartTime: 1213674}},
		{name: "comm of a closing parenthesis and a newline", in: "9 ()\n) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0", want: Stat{PID: 9, Comm: ")\n", State: 'Z', PPID: 1, PGrp: 9, Session: 9, TPGid: -1, Threads: 1, StartTime: 7}},
		{name: "empty comm", in: "9 () S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", want: Stat{PID: 9, State: 'S', PPID: 1, PGrp: 9, Session: 9, TPGid: -1, Threads: 1, StartTime: 7}},
		{name: "empty", in: "", err: "no (comm)"},
		{name: "no closing parenthesis", in: "1 (init S 0", err: "no (comm)"},
		{name: "parentheses reversed", in: "1 )x( S", err: "no (comm)"},
		{name: "pid not a number", in: "x (a) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", err: "not a pid"},
		{name: "pid 0", in: "0 (a) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", err: "not a pid"},
		{name: "truncated", in: "1 (a) S 0 0 0 0 -1 0 0 0", err: "at least 20"},
		{name: "state two letters", in: "1 (a) SS 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", err: "not a letter"},
		{name: "negative ppid", in: "1 (a) S -5 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", err: "field 4"},
		{name: "nice 20", in: "1 (a) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 20 1 0 7", err: "nice 20"},
		{name: "utime negative", in: "1 (a) S 0 0 0 0 -1 0 0 0 0 0 -1 0 0 0 20 0 1 0 7", err: "field 14"},
		{name: "starttime huge", in: "1 (a) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999", err: "field 22"},
		{name: "comm too long", in: "1 (" + strings.Repeat("x", 65) + ") S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", err: "more than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "proctable: ") {
					t.Fatalf("err = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseStat = %+v, %v\nwant %+v", got, err, tt.want)
			}
		})
	}
}

func TestStatLetters(t *testing.T) {
	for _, tt := range []struct {
		stat   string
		locked uint64
		want   string
	}{
		{stat1, 43052, "SLl"},
		{stat2, 0, "S"},
		{stat4, 0, "I<"},
		{stat6250, 0, "Ss+"},
		{stat7710, 0, "RN"},
	} {
		s, err := ParseStat([]byte(tt.stat))
		if err != nil {
			t.Fatal(err)
		}
		if got := StatLetters(s, tt.locked); got != tt.want {
			t.Errorf("pid %d: StatLetters = %q, want %q (what ps shows)", s.PID, got, tt.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Status
		err  string
	}{
		{name: "pid 1", in: status1, want: Status{RSS: 13456, Locked: 43052}},
		{name: "kernel thread", in: status2, want: Status{}},
		{name: "user", in: status7710, want: Status{UID: 1000, GID: 100, RSS: 2168}},
		{name: "effective ids", in: "Uid:\t1000\t0\t0\t0\nGid:\t5\t6\t7\t8\n", want: Status{UID: 0, GID: 6}},
		{name: "no uid", in: "Gid:\t0\t0\t0\t0\n", err: "lacks a Uid"},
		{name: "three ids", in: "Uid:\t0\t0\t0\nGid:\t0\t0\t0\t0\n", err: "has 3 ids"},
		{name: "uid beyond 32 bits", in: "Uid:\t0\t4294967296\t0\t0\nGid:\t0\t0\t0\t0\n", err: "not an id"},
		{name: "rss in MB", in: status1 + "VmRSS:\t 3 MB\n", err: "not a size in kB"},
		{name: "rss huge", in: status1 + "VmRSS:\t 1125899906842624 kB\n", err: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseStatus = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{cmdline1, []string{"process_api", "--firecracker-init", "--addr", "0.0.0.0:2024"}},
		{cmdline6250, []string{"/sbin/agetty", "-o", "-p -- \\u", "--noclear", "--keep-baud", "-", "115200,38400,9600", "xterm"}},
		{"nginx: worker process", []string{"nginx: worker process"}}, // setproctitle, no NUL
		{"a\x00\x00b\x00", []string{"a", "", "b"}},                   // an empty argument kept
		{"\x00", []string{""}},           // argv of one empty string
		{"x\x00\x00", []string{"x", ""}}, // only the last NUL ends it
	} {
		if got := ParseCmdline([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseBtimeUptime(t *testing.T) {
	bt, err := ParseBtime([]byte(procStat))
	if err != nil || !bt.Equal(time.Unix(1795968787, 0)) {
		t.Fatalf("ParseBtime = %v, %v", bt, err)
	}
	for _, bad := range []string{"", "cpu 1 2\n", "btime\n", "btime -1\n", "btime 1 2\n", "btime x\n"} {
		if _, err := ParseBtime([]byte(bad)); err == nil {
			t.Errorf("ParseBtime(%q) succeeded", bad)
		}
	}
	for in, want := range map[string]time.Duration{
		procUptime:    12200 * time.Second,
		"12048.45 1":  12048*time.Second + 450*time.Millisecond,
		"7":           7 * time.Second,
		"0.000000001": time.Nanosecond,
	} {
		if got, err := ParseUptime([]byte(in)); err != nil || got != want {
			t.Errorf("ParseUptime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", " ", "-1.0", "1e3", ".5", "1.0000000001", "1000000000.0", "1.x"} {
		if _, err := ParseUptime([]byte(bad)); err == nil {
			t.Errorf("ParseUptime(%q) succeeded", bad)
		}
	}
}

// oneLine: a parser's error is one line with the package prefix once.
func oneLine(t *testing.T, in []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	m := err.Error()
	if strings.Count(m, "proctable: ") != 1 || !strings.HasPrefix(m, "proctable: ") || len(m) > 200 {
		t.Fatalf("%q: error %q", in, m)
	}
}

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{stat1, stat2, stat4, stat6250, stat7710, "9 ()\n) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		oneLine(t, b, err)
		if err != nil {
			return
		}
		if s.PID < 1 || len(s.Comm) > maxComm || s.Nice < -20 || s.Nice > 19 || s.UTime > maxTicks || s.StartTime > maxTicks {
			t.Fatalf("%q: %+v", b, s)
		}
		if l := StatLetters(s, 1); len(l) < 1 || len(l) > 6 {
			t.Fatalf("%q: StatLetters %q", b, l)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{status1, status2, status7710} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		oneLine(t, b, err)
		if err == nil && (s.RSS >= 1<<50 || s.Locked >= 1<<50) {
			t.Fatalf("%q: %+v", b, s)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{cmdline1, cmdline6250, "", "\x00", "a b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		args := ParseCmdline(b)
		if len(b) == 0 {
			if args != nil {
				t.Fatalf("%q: %q", b, args)
			}
			return
		}
		// Joined back with NULs, the argv is the text without its final NUL.
		if got, want := strings.Join(args, "\x00"), strings.TrimSuffix(string(b), "\x00"); got != want {
			t.Fatalf("%q: rejoined %q", b, got)
		}
	})
}

func FuzzParseBtime(f *testing.F) {
	f.Add([]byte(procStat))
	f.Add([]byte("btime 1099511627776\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		bt, err := ParseBtime(b)
		oneLine(t, b, err)
		if err == nil && (bt.Before(time.Unix(0, 0)) || bt.After(time.Unix(1<<40, 0))) {
			t.Fatalf("%q: %v", b, bt)
		}
	})
}

func FuzzParseUptime(f *testing.F) {
	f.Add([]byte(procUptime))
	f.Add([]byte("999999999.999999999"))
	f.Add([]byte("999999999999.999999999"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseUptime(b)
		oneLine(t, b, err)
		if err == nil && d < 0 {
			t.Fatalf("%q: %v", b, d)
		}
	})
}
