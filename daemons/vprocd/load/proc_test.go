package load

import (
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/proctext"
)

const (
	sampleLoadavg = "0.54 1.48 3.34 3/179 27960\n"
	sampleStat    = `cpu  791363 0 329591 1059771 5558 0 13296 854 0 0
cpu0 393614 0 152918 545655 1527 0 5881 438 0 0
cpu1 397748 0 176672 514115 4030 0 7415 415 0 0
intr 123 4 5
ctxt 42
procs_running 3
procs_blocked 0
`
	sampleMeminfo = `MemTotal:       24684092 kB
MemFree:        21188456 kB
MemAvailable:   23828212 kB
Buffers:           54700 kB
Cached:          2345156 kB
`
)

func TestParseLoadavg(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Loadavg
		err  string
	}{
		{sampleLoadavg, Loadavg{0.54, 1.48, 3.34, 3, 179}, ""},
		{"0.00 0.00 0.00 1/1 1", Loadavg{0, 0, 0, 1, 1}, ""},
		{"", Loadavg{}, "load: /proc/loadavg has 0 fields, want 5"},
		{"1 2 3", Loadavg{}, "load: /proc/loadavg has 3 fields, want 5"},
		{"x 2 3 1/2 5", Loadavg{}, `load: /proc/loadavg field 1 "x" is not a load average`},
		{"1 NaN 3 1/2 5", Loadavg{}, `load: /proc/loadavg field 2 "NaN" is not a load average`},
		{"1 2 -3 1/2 5", Loadavg{}, `load: /proc/loadavg field 3 "-3" is not a load average`},
		{"1 2 Inf 1/2 5", Loadavg{}, `load: /proc/loadavg field 3 "Inf" is not a load average`},
		{"1 2 3 12 5", Loadavg{}, `load: /proc/loadavg field 4 "12" is not running/total`},
		{"1 2 3 -1/2 5", Loadavg{}, `load: /proc/loadavg running count: "-1" is not a count`},
		{"1 2 3 1/99999999999 5", Loadavg{}, `load: /proc/loadavg total count: "99999999999" is out of range`},
	} {
		got, err := ParseLoadavg([]byte(tc.in))
		if got != tc.want || errText(err) != tc.err {
			t.Errorf("ParseLoadavg(%q) = %+v, %v; want %+v, %s", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Stat
		err  string
	}{
		{sampleStat, Stat{ProcsRunning: 3, CPUs: 2}, ""},
		{"procs_running 0\n", Stat{}, ""},
		{"cpu 1 2\ncpux 1\ncpu7 1\nprocs_running 1", Stat{ProcsRunning: 1, CPUs: 1}, ""},
		{"cpu0 1\n", Stat{}, "load: /proc/stat has no procs_running line"},
		{"procs_running\n", Stat{}, "load: /proc/stat procs_running line has 1 fields, want 2"},
		{"procs_running x\n", Stat{}, `load: /proc/stat procs_running: "x" is not a count`},
		{"procs_running 4294967296\n", Stat{}, `load: /proc/stat procs_running: "4294967296" is out of range`},
	} {
		got, err := ParseStat([]byte(tc.in))
		if got != tc.want || errText(err) != tc.err {
			t.Errorf("ParseStat(%q) = %+v, %v; want %+v, %s", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Meminfo
		err  string
	}{
		{sampleMeminfo, Meminfo{Total: 24684092 * 1024, Available: 23828212 * 1024}, ""},
		{"MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 1 kB\nCached: 2 kB\n", Meminfo{Total: 102400, Available: 13 * 1024}, ""},
		{"MemTotal: 100 kB\nHugePages_Total: x\n", Meminfo{}, "load: /proc/meminfo has neither MemAvailable nor MemFree"},
		{"MemFree: 100 kB\n", Meminfo{}, "load: /proc/meminfo has no MemTotal line"},
		{"MemTotal: 100 MB\n", Meminfo{}, `load: /proc/meminfo MemTotal: "100 MB" is not a size in kB`},
		{"MemTotal: -1 kB\n", Meminfo{}, `load: /proc/meminfo MemTotal: "-1 kB" is not a size in kB`},
		{"MemTotal: 1125899906842624 kB\n", Meminfo{}, `load: /proc/meminfo MemTotal: "1125899906842624" kB is out of range`},
		{"MemTotal: 1 kB\nMemFree: 1125899906842623 kB\nBuffers: 1125899906842623 kB\nCached: 1125899906842623 kB\n", Meminfo{Total: 1024, Available: 3 * 1125899906842623 * 1024}, ""},
	} {
		got, err := ParseMeminfo([]byte(tc.in))
		if got != tc.want || errText(err) != tc.err {
			t.Errorf("ParseMeminfo(%q) = %+v, %v; want %+v, %s", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMeasure(t *testing.T) {
	at := time.Unix(1000, 0)
	v, err := Measure(2, at, []byte(sampleLoadavg), []byte(sampleStat), []byte(sampleMeminfo))
	want := Vector{Node: 2, RunQueue: 2, Load1: 0.54, CPUs: 2, FreeMem: 23828212 * 1024, At: at}
	if err != nil || v != want {
		t.Fatalf("Measure = %+v, %v; want %+v", v, err, want)
	}
	v, err = Measure(2, at, []byte(sampleLoadavg), []byte("procs_running 0"), []byte(sampleMeminfo))
	if err != nil || v.RunQueue != 0 || v.CPUs != 1 {
		t.Fatalf("Measure without cpu lines = %+v, %v; want run queue 0, 1 CPU", v, err)
	}
	for _, bad := range [][3]string{{"", sampleStat, sampleMeminfo}, {sampleLoadavg, "", sampleMeminfo}, {sampleLoadavg, sampleStat, ""}} {
		if _, err := Measure(2, at, []byte(bad[0]), []byte(bad[1]), []byte(bad[2])); err == nil {
			t.Errorf("Measure(%q) = nil error", bad)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// oneLine checks an error of a parser of outside text: the package prefix
// once, one line.
func oneLine(t *testing.T, in []byte, err error) {
	if err != nil && (strings.Count(err.Error(), "load:") != 1 || strings.Contains(err.Error(), "\n")) {
		t.Fatalf("%q: error %q", in, err)
	}
}

func FuzzParseLoadavg(f *testing.F) {
	f.Add([]byte(sampleLoadavg))
	f.Add([]byte("1e308 0x1p3 1_0 1/2 3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLoadavg(b)
		oneLine(t, b, err)
		if err == nil && (l.Load1 < 0 || l.Load1 > maxLoad || l.Load1 != l.Load1) {
			t.Fatalf("%q: load %v", b, l.Load1)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(sampleStat))
	f.Add([]byte("procs_running 1\nprocs_running 2\ncpu01 x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseStat(b)
		oneLine(t, b, err)
	})
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte(sampleMeminfo))
	f.Add([]byte("MemTotal: 1125899906842623 kB\nMemFree: 1125899906842623 kB\nBuffers: 1125899906842623 kB\nCached: 1125899906842623 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeminfo(b)
		oneLine(t, b, err)
		if err == nil && (m.Total >= proctext.MaxKB*1024 || m.Available >= 3*proctext.MaxKB*1024) {
			t.Fatalf("%q: %+v", b, m)
		}
	})
}
