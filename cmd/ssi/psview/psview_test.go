package psview

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

var now = time.Date(2026, 11, 29, 19, 30, 0, 0, time.UTC)

func names(uid uint32) string {
	switch uid {
	case 0:
		return "root"
	case 1000:
		return "alice"
	case 1001:
		return "evil\x1b[2Jname" // a name with an escape sequence
	}
	return "" // unknown: the number
}

func rows() []proctable.Row {
	return []proctable.Row{
		{CPID: cpid.MustMake(1, 1), Node: 1, PID: 1, Stat: "Ss", CPU: 0.04, RSS: 13456, Start: now.Add(-400 * 24 * time.Hour),
			CPUTime: 26*time.Hour + 3*time.Minute + 4*time.Second, Comm: "systemd", Args: []string{"/sbin/init"}},
		{CPID: cpid.MustMake(1, 2), Node: 1, PID: 2, Stat: "S", Start: now.Add(-30 * 24 * time.Hour), Comm: "kthreadd", Kernel: true},
		{CPID: cpid.MustMake(1, 7710), Node: 3, PID: 77, PPID: cpid.MustMake(3, 76), UID: 1000, Stat: "R+", CPU: 99.95, RSS: 2168,
			Start: now.Add(-2 * time.Hour), CPUTime: 90 * time.Second, Comm: "x",
			Args: []string{"sh", "-c", "echo a\nFORGED ROW\x1b[31m", ""}},
		{CPID: cpid.MustMake(2, 9), Node: 2, PID: 9, PPID: cpid.MustMake(2, 8), UID: 4242, Stat: "Z", Start: now.Add(-time.Minute), Comm: "a) b (c"},
		{CPID: cpid.MustMake(2, 10), Node: 2, PID: 10, UID: 1001, Stat: "S", Start: now, Comm: "ok", Args: []string{"/usr/bin/naïve", "--x=ü"}},
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, rows(), Options{Now: now, Loc: time.UTC, User: names}); err != nil {
		t.Fatal(err)
	}
	want := `CPID     NODE  USER               PPID      STAT  %CPU   RSS    START  TIME        COMMAND
4194305  1     root               0         Ss    0.0    13456  2025   1-02:03:04  /sbin/init
4194306  1     root               0         S     0.0    0      Oct30  00:00:00    [kthreadd]
4202014  3     alice              12582988  R+    100.0  2168   17:30  00:01:30    sh -c "echo a\nFORGED ROW\x1b[31m" ""
8388617  2     4242               8388616   Z     0.0    0      19:29  00:00:00    ["a) b (c"] <defunct>
8388618  2     "evil\x1b[2Jname"  0         S     0.0    0      19:30  00:00:00    /usr/bin/naïve --x=ü
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if strings.Count(b.String(), "\n") != len(rows())+1 || strings.Contains(b.String(), "\x1b") {
		t.Fatal("a name forged a line or kept an escape sequence")
	}
}

func TestTableWidthAndMax(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, rows(), Options{Now: now, Loc: time.UTC, User: names, Width: 40, MaxRows: 2}); err != nil {
		t.Fatal(err)
	}
	want := "CPID     NODE  USER  PPID  STAT  %CPU  R\n" +
		"4194305  1     root  0     Ss    0.0   1\n" +
		"4194306  1     root  0     S     0.0   0\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
	// Cutting counts characters, not bytes.
	b.Reset()
	if err := cut(&b, bytes.NewBufferString("naïve\nüü\n"), 3); err != nil || b.String() != "naï\nüü\n" {
		t.Fatalf("cut = %q, %v", b.String(), err)
	}
}

func TestColumns(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain", "plain"}, {"", `""`}, {"a b", `"a b"`}, {`a"b`, `"a\"b"`}, {`a\b`, `"a\\b"`},
		{"\t", `"\t"`}, {"\xff", `"\xff"`}, {"日本", "日本"}, {"\u202e", `"\u202e"`},
	} {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "00:00:00", -time.Second: "00:00:00", 59*time.Second + 999*time.Millisecond: "00:00:59",
		23*time.Hour + 59*time.Minute: "23:59:00", 24 * time.Hour: "1-00:00:00", 1000*24*time.Hour + time.Second: "1000-00:00:01",
	} {
		if got := CPUTime(d); got != want {
			t.Errorf("CPUTime(%v) = %s, want %s", d, got, want)
		}
	}
	for _, tt := range []struct {
		start time.Time
		want  string
	}{
		{now.Add(-23 * time.Hour), "20:30"},
		{now.Add(-25 * time.Hour), "Nov28"},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "Jan01"},
		{time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC), "2025"},
	} {
		if got := Start(tt.start, now, time.UTC); got != tt.want {
			t.Errorf("Start(%v) = %s, want %s", tt.start, got, tt.want)
		}
	}
	// The zone is the reader's: 19:30 UTC is 20:30 in Paris.
	paris := time.FixedZone("CET", 3600)
	if got := Start(now, now, paris); got != "20:30" {
		t.Errorf("Start in CET = %s", got)
	}
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0K", 1536: "1.5K", 3 << 30: "3.0G", 1 << 62: "4.0E", 1<<20 - 1: "1.0M"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, nil, names); err != nil || b.String() != "[]\n" {
		t.Fatalf("empty: %q, %v", b.String(), err)
	}
	b.Reset()
	in := rows()[2:4]
	if err := JSON(&b, in, names); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`"cpid": 4202014`, `"user": "alice"`, `"user": "4242"`, `"args": [` + "\n" + `      "sh",`, `"echo a\nFORGED ROW\u001b[31m"`} {
		if !strings.Contains(out, want) {
			t.Errorf("JSON lacks %s:\n%s", want, out)
		}
	}
	if in[0].User != "" {
		t.Fatal("JSON modified its input")
	}
}

func TestTop(t *testing.T) {
	loads := []NodeLoad{
		{Node: 1, Known: true, RunQueue: 3, Load1: 2.5, CPUs: 2, FreeMem: 3 << 30},
		{Node: 2},
		{Node: 3, Known: true, RunQueue: 0, Load1: 0.01, CPUs: 8, FreeMem: 512 << 20},
	}
	in := rows()
	var b bytes.Buffer
	if err := Top(&b, loads, in, Options{Now: now, Loc: time.UTC, User: names, MaxRows: 3}); err != nil {
		t.Fatal(err)
	}
	want := `ssi top - 19:30:00, 3 nodes, 5 processes
NODE  LOAD1  RUNQ  CPUS  RUNQ/CPU  FREE
1     2.50   3     2     1.50      3.0G
2     -      -     -     -         -
3     0.01   0     8     0.00      512.0M

CPID     NODE  USER   PPID      STAT  %CPU   RSS    START  TIME        COMMAND
4202014  3     alice  12582988  R+    100.0  2168   17:30  00:01:30    sh -c "echo a\nFORGED ROW\x1b[31m" ""
4194305  1     root   0         Ss    0.0    13456  2025   1-02:03:04  /sbin/init
4194306  1     root   0         S     0.0    0      Oct30  00:00:00    [kthreadd]
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if in[0].CPID != cpid.MustMake(1, 1) {
		t.Fatal("Top sorted its input")
	}
}

// FuzzTable: whatever a process calls itself and whatever its user is
// named, the table has one line per row and no control character.
func FuzzTable(f *testing.F) {
	f.Add("sh", "-c", "x) y", "alice", "S")
	f.Add("a\nb", "\x1b[2J", "\xff\xfe", "evil\r", "Z\t")
	f.Fuzz(func(t *testing.T, arg0, arg1, comm, name, stat string) {
		rs := []proctable.Row{
			{CPID: cpid.MustMake(1, 2), Stat: stat, Comm: comm, Args: []string{arg0, arg1}},
			{CPID: cpid.MustMake(1, 3), UID: 7, Stat: stat, Comm: comm, Kernel: true},
		}
		var b bytes.Buffer
		o := Options{Now: now, Loc: time.UTC, User: func(uint32) string { return name }}
		if err := Table(&b, rs, o); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if strings.Count(out, "\n") != len(rs)+1 {
			t.Fatalf("%d lines:\n%s", strings.Count(out, "\n"), out)
		}
		if strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) }) {
			t.Fatalf("control character in\n%q", out)
		}
	})
}

func TestMigrateTable(t *testing.T) {
	rs := rows()
	rs[2].Migrate = "criu"
	rs[4].Migrate = "no: pid 10 holds a socket\tx" // a tab does not break the columns
	var b bytes.Buffer
	if err := MigrateTable(&b, rs, Options{User: names}); err != nil {
		t.Fatal(err)
	}
	want := `CPID     NODE  USER               MIGRATE                      COMMAND
4202014  3     alice              criu                         sh -c "echo a\nFORGED ROW\x1b[31m" ""
8388618  2     "evil\x1b[2Jname"  no: pid 10 holds a socket x  /usr/bin/naïve --x=ü
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
