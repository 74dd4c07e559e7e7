package movable

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/openssi/openssi/daemons/vprocd/migrate"
	"github.com/openssi/openssi/internal/criu"
)

func TestChoose(t *testing.T) {
	ready := criu.State{Status: criu.Ready, Bin: "/c/criu", Version: criu.Version{Major: 4, Minor: 2, Sublevel: 1}}
	missing := criu.State{Status: criu.Missing, Reason: "no criu on PATH"}
	for _, tc := range []struct {
		name string
		f    Facts
		want string
		mech migrate.Mechanism
	}{
		{"cooperative wins", Facts{Coop: true, CRIU: ready, Obstacles: []string{"pid 3 holds a socket"}}, "coop", migrate.Cooperative},
		{"cooperative without CRIU", Facts{Coop: true, CRIU: missing}, "coop", migrate.Cooperative},
		{"criu", Facts{CRIU: ready}, "criu", migrate.CRIU},
		{"a user's program", Facts{CRIU: ready, Owner: 1000}, "no: it does not speak the checkpoint protocol, and " + ByCRIU, 0},
		{"a user's cooperative program", Facts{Coop: true, CRIU: ready, Owner: 1000}, "coop", migrate.Cooperative},
		{"no criu", Facts{CRIU: missing}, "no: it does not speak the checkpoint protocol and CRIU is missing: no criu on PATH", 0},
		{"criu cannot", Facts{CRIU: ready, Obstacles: []string{"pid 3 holds a socket", "pid 4 locks memory (4 kB)"}},
			"no: it does not speak the checkpoint protocol and CRIU cannot move it: pid 3 holds a socket; pid 4 locks memory (4 kB)", 0},
	} {
		c := Choose(tc.f)
		if c.String() != tc.want || c.Mech != tc.mech {
			t.Errorf("%s: Choose = %v (%s), want %v (%q)", tc.name, c.Mech, c, tc.mech, tc.want)
		}
	}
}

// proc builds a /proc of processes: each pid with its status, maps,
// children and descriptors (name -> target).
type fakeProc struct {
	pid      string
	status   string
	maps     string
	children string
	fds      map[string]string
	stat     string // "" for none
}

func procFS(ps ...fakeProc) fs.FS {
	m := fstest.MapFS{}
	for _, p := range ps {
		m[p.pid+"/status"] = &fstest.MapFile{Data: []byte(p.status)}
		m[p.pid+"/maps"] = &fstest.MapFile{Data: []byte(p.maps)}
		m[p.pid+"/task/"+p.pid+"/children"] = &fstest.MapFile{Data: []byte(p.children)}
		m[p.pid+"/fd"] = &fstest.MapFile{Mode: fs.ModeDir | 0o500}
		if p.stat != "" {
			m[p.pid+"/stat"] = &fstest.MapFile{Data: []byte(p.stat)}
		}
		for n, target := range p.fds {
			m[p.pid+"/fd/"+n] = &fstest.MapFile{Mode: fs.ModeSymlink | 0o700, Data: []byte(target)}
		}
	}
	return m
}

const plainStatus = "Name:\tsh\nVmLck:\t       0 kB\n"
const plainMaps = "55d0-55d1 r-xp 00000000 08:01 123 /usr/bin/dash\n7f00-7f01 r--s 00000000 08:01 9 /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache\n7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n"

var stdio = map[string]string{"0": "pipe:[10]", "1": "pipe:[11]", "2": "pipe:[11]"}

func TestObstacles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		procs []fakeProc
		want  []string
	}{
		{"a shell loop and its sleep", []fakeProc{
			{pid: "10", status: plainStatus, maps: plainMaps, children: "11 ", fds: stdio},
			{pid: "11", status: plainStatus, maps: plainMaps, fds: map[string]string{"0": "/dev/null", "1": "pipe:[11]"}},
		}, nil},
		{"a child with a socket and a terminal", []fakeProc{
			{pid: "10", status: plainStatus, maps: plainMaps, children: "11", fds: stdio},
			{pid: "11", status: plainStatus, maps: plainMaps, children: "12", fds: map[string]string{"0": "/dev/pts/3", "3": "socket:[99]", "4": "socket:[98]"}},
			{pid: "12", status: plainStatus, maps: plainMaps, fds: map[string]string{"0": "/dev/pts/3", "3": "socket:[99]"}},
		}, []string{"pid 11 holds a terminal (/dev/pts/3)", "pid 11 holds a socket"}},
		{"locked and shared memory", []fakeProc{
			{pid: "10", status: "VmLck:\t  8 kB\n", maps: plainMaps + "7f00-7f01 rw-s 00000000 00:01 5 /SYSV00000000 (deleted)\n", fds: stdio},
		}, []string{"pid 10 locks memory (8 kB)", "pid 10 shares memory (/SYSV00000000 (deleted))"}},
		{"a file mapped shared and writable", []fakeProc{
			{pid: "10", status: plainStatus, maps: plainMaps + "7f02-7f03 rw-s 00000000 08:01 7 /var/db/x\n", fds: stdio},
		}, []string{"pid 10 shares memory (/var/db/x)"}},
		{"a file and an eventfd", []fakeProc{
			{pid: "10", status: plainStatus, maps: plainMaps, fds: map[string]string{"0": "pipe:[1]", "3": "/home/u/log", "4": "anon_inode:[eventfd]"}},
		}, []string{"pid 10 has a file open (/home/u/log) that may not exist on another node", "pid 10 holds an anon_inode:[eventfd] descriptor"}},
		{"gone", nil, nil},
		{"a child of its own session", []fakeProc{
			{pid: "10", status: plainStatus, maps: plainMaps, children: "11 12", fds: stdio, stat: "10 (sh) S 1 10 10 0 -1"},
			{pid: "11", status: plainStatus, maps: plainMaps, fds: stdio, stat: "11 (sleep) S 10 10 10 0 -1"},
			{pid: "12", status: plainStatus, maps: plainMaps, fds: stdio, stat: "12 (a (b) c) S 10 12 12 0 -1"},
		}, []string{"pid 12 is in another process group or session than the program"}},
		{"at most four", []fakeProc{
			{pid: "10", status: "VmLck: 4 kB\n", maps: "1-2 rw-s 0 0:0 0\n", fds: map[string]string{"3": "socket:[1]", "4": "/x", "5": "/dev/tty1"}},
		}, []string{"pid 10 locks memory (4 kB)", "pid 10 shares memory (anonymous)", "pid 10 holds a socket", "pid 10 has a file open (/x) that may not exist on another node"}},
	} {
		got := Obstacles(procFS(tc.procs...), 10)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Obstacles = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTree(t *testing.T) {
	p := procFS(
		fakeProc{pid: "1", children: "2 3"},
		fakeProc{pid: "2", children: "4"},
		fakeProc{pid: "3", children: "1"}, // a loop is not followed
		fakeProc{pid: "4"},
	)
	if got := Tree(p, 1); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Errorf("Tree = %v", got)
	}
	if got := strings.Join(Obstacles(p, 1), ","); got != "" {
		t.Errorf("Obstacles of an empty tree = %q", got)
	}
}

func TestBrief(t *testing.T) {
	for in, want := range map[string]string{
		"": "criu",
		"it does not speak the checkpoint protocol and CRIU cannot move it: pid 3 has a file open (/home/a/x (1)) that may not exist on another node; pid 4 locks memory (4 kB)": "no: it does not speak the checkpoint protocol and CRIU cannot move it: pid 3 has a file open that may not exist on another node; pid 4 locks memory",
		"it does not speak the checkpoint protocol, and " + ByCRIU: "no: it does not speak the checkpoint protocol, and CRIU moves only root's programs here: use the cooperative protocol",
	} {
		c := Choice{Reason: in}
		if in == "" {
			c.Mech = migrate.CRIU
		}
		if got := c.Brief(); got != want {
			t.Errorf("Brief of %q = %q, want %q", in, got, want)
		}
	}
}
