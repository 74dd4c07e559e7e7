// Package psview renders vprocd's process rows for the ssi commands: the
// ps-like table of `ssi ps`, its JSON (`-o json`), and the frames of
// `ssi top` (per-node load lines over the rows sorted by %CPU). It reads no
// clock and no terminal: the time, the width, the row limit and the uid to
// name lookup come in Options, so tests render exact text.
//
// Names a user chooses (a process's argv and comm, and, to be safe, user
// names) are escaped as `ssi locks` escapes lock names (see Escape): no
// process can forge rows or columns or send the terminal escape sequences
// by naming itself.
package psview

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

// Options are what a rendering depends on besides the rows.
type Options struct {
	// Now is the time START is relative to (ps shows the hour for a
	// process started within a day, the date within the year, else the
	// year).
	Now time.Time
	// Loc is the time zone of START; nil is time.Local.
	Loc *time.Location
	// User names a uid; nil looks it up with os/user (uids are the same on
	// every node) and falls back to the number.
	User func(uid uint32) string
	// Width cuts every line to that many characters (a terminal's
	// width); 0 does not cut.
	Width int
	// MaxRows shows at most that many process rows (top, to fit the
	// terminal); 0 shows all.
	MaxRows int
}

// Header is the table's column line.
const Header = "CPID\tNODE\tUSER\tPPID\tSTAT\t%CPU\tRSS\tSTART\tTIME\tCOMMAND"

// ClearScreen moves the cursor home and clears the terminal: `ssi top`
// writes it before each frame.
const ClearScreen = "\x1b[H\x1b[2J"

// Escape returns a name as the table shows it, by the rule `ssi locks`
// uses: as is when it is not empty, is UTF-8 and every character is
// printable and none is a space, a quote or a backslash; otherwise quoted
// in Go syntax, with \t, \n, \x1b and bytes that are not UTF-8 escaped.
func Escape(s string) string {
	if s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || r == ' ' || r == '"' || r == '\\'
	}) {
		return s
	}
	return strconv.Quote(s)
}

// Command is the COMMAND column of r: its argv, each argument escaped,
// joined by spaces; for a kernel thread or a process without argv its
// comm in brackets, as ps shows it, and " <defunct>" after a zombie's.
func Command(r proctable.Row) string {
	if len(r.Args) == 0 || r.Kernel {
		s := "[" + Escape(r.Comm) + "]"
		if strings.HasPrefix(r.Stat, "Z") {
			s += " <defunct>"
		}
		return s
	}
	args := make([]string, len(r.Args))
	for i, a := range r.Args {
		args[i] = Escape(a)
	}
	return strings.Join(args, " ")
}

// Start is the START column: "15:04" for a process started less than 24
// hours before now, "Jan02" within the same year, else "2006", as ps.
func Start(start, now time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	start, now = start.In(loc), now.In(loc)
	switch {
	case now.Sub(start) < 24*time.Hour:
		return start.Format("15:04")
	case start.Year() == now.Year():
		return start.Format("Jan02")
	default:
		return start.Format("2006")
	}
}

// CPUTime is the TIME column: [DD-]HH:MM:SS, as ps.
func CPUTime(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	days, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	if days > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}

// users resolves uids once per rendering.
type users struct {
	lookup func(uint32) string
	seen   map[uint32]string
}

func newUsers(lookup func(uint32) string) *users {
	if lookup == nil {
		lookup = LookupUser
	}
	return &users{lookup: lookup, seen: map[uint32]string{}}
}

func (u *users) name(uid uint32) string {
	n, ok := u.seen[uid]
	if !ok {
		n = u.lookup(uid)
		if n == "" {
			n = strconv.FormatUint(uint64(uid), 10)
		}
		u.seen[uid] = n
	}
	return n
}

// LookupUser is the default Options.User: the name os/user finds, or the
// number.
func LookupUser(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// Table writes rows, in their order, as the ps-like table: Header, then
// one line per row.
func Table(w io.Writer, rows []proctable.Row, o Options) error {
	var buf bytes.Buffer
	table(&buf, rows, o, newUsers(o.User))
	return cut(w, &buf, o.Width)
}

func table(buf *bytes.Buffer, rows []proctable.Row, o Options, u *users) {
	tw := tabwriter.NewWriter(buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, Header)
	for i, r := range rows {
		if o.MaxRows > 0 && i == o.MaxRows {
			break
		}
		ppid := "0"
		if r.PPID != 0 {
			ppid = r.PPID.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.1f\t%d\t%s\t%s\t%s\n",
			r.CPID, r.Node, Escape(u.name(r.UID)), ppid, Escape(r.Stat), r.CPU, r.RSS,
			Start(r.Start, o.Now, o.Loc), CPUTime(r.CPUTime), Command(r))
	}
	_ = tw.Flush()
}

// cut copies buf to w, each line cut to width characters (0: not cut).
func cut(w io.Writer, buf *bytes.Buffer, width int) error {
	if width <= 0 {
		_, err := w.Write(buf.Bytes())
		return err
	}
	bw := bufio.NewWriter(w)
	for line := range bytes.Lines(buf.Bytes()) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if utf8.RuneCount(line) > width {
			n := 0
			for i := range string(line) {
				if n == width {
					line = line[:i]
					break
				}
				n++
			}
		}
		bw.Write(line)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// JSON writes rows as an indented JSON array (`ssi ps -o json`), with
// User filled in; an empty list is [], not null.
func JSON(w io.Writer, rows []proctable.Row, lookup func(uid uint32) string) error {
	u := newUsers(lookup)
	out := make([]proctable.Row, len(rows))
	for i, r := range rows {
		r.User = u.name(r.UID)
		out[i] = r
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// NodeLoad is one node's load line in `ssi top`: what vprocd's load
// window says of it (load.Vector), or Known false when it has heard
// nothing recent of that node.
type NodeLoad struct {
	Node     uint32
	Known    bool
	RunQueue uint32
	Load1    float64
	CPUs     uint32
	// FreeMem is the memory available, in bytes.
	FreeMem uint64
}

// Top writes one frame of `ssi top`: a title line, one load line per node
// in the order given, a blank line, then the table of rows sorted by %CPU
// (rows is not modified), at most o.MaxRows of them. The caller computes
// %CPU between frames with proctable.TopCPU and clears the screen.
func Top(w io.Writer, loads []NodeLoad, rows []proctable.Row, o Options) error {
	loc := o.Loc
	if loc == nil {
		loc = time.Local
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "ssi top - %s, %d nodes, %d processes\n", o.Now.In(loc).Format("15:04:05"), len(loads), len(rows))
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tLOAD1\tRUNQ\tCPUS\tRUNQ/CPU\tFREE")
	for _, l := range loads {
		if !l.Known {
			fmt.Fprintf(tw, "%d\t-\t-\t-\t-\t-\n", l.Node)
			continue
		}
		fmt.Fprintf(tw, "%d\t%.2f\t%d\t%d\t%.2f\t%s\n", l.Node, l.Load1, l.RunQueue, l.CPUs,
			float64(l.RunQueue)/float64(max(l.CPUs, 1)), Bytes(l.FreeMem))
	}
	_ = tw.Flush()
	buf.WriteByte('\n')
	sorted := append([]proctable.Row(nil), rows...)
	proctable.SortByCPU(sorted)
	table(&buf, sorted, o, newUsers(o.User))
	return cut(w, &buf, o.Width)
}

// Bytes is a size as top shows memory: 1023B, 1.5K, 12.0M, 3.2G, 1.0T.
func Bytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1023.95 && i < len(units)-1 { // what %.1f would print as 1024.0
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%c", v, units[i])
}

// MigrateHeader is the column line of MigrateTable.
const MigrateHeader = "CPID\tNODE\tUSER\tMIGRATE\tCOMMAND"

// MigrateTable writes the programs started migratable among rows (those
// whose Migrate is set) and how each would move (`ssi ps -o migrate`):
// coop, criu, or no and the reason.
func MigrateTable(w io.Writer, rows []proctable.Row, o Options) error {
	var buf bytes.Buffer
	u := newUsers(o.User)
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, MigrateHeader)
	for _, r := range rows {
		if r.Migrate == "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.CPID, r.Node, Escape(u.name(r.UID)), strings.Map(printable, r.Migrate), Command(r))
	}
	_ = tw.Flush()
	return cut(w, &buf, o.Width)
}

// printable replaces a control character (a tab would break the
// columns) with a space.
func printable(r rune) rune {
	if r < ' ' || r == 0x7f {
		return ' '
	}
	return r
}
