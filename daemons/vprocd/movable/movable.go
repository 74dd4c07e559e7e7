// Package movable decides how a program started migratable can move
// (`ssi ps -o migrate`, `ssi migrate`): cooperatively when it speaks the
// checkpoint protocol (it said Hello on its socket), else through CRIU
// when CRIU works on this node and nothing the program holds is beyond
// what a dump and a restore on another node recreate; otherwise it cannot
// move, and the reason says why (as openMosix said of a process that
// locks or shares memory). It reads the process tree from a /proc given
// as an fs.FS and holds no state.
package movable

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/openssi/openssi/daemons/vprocd/migrate"
	"github.com/openssi/openssi/internal/criu"
)

// Facts are what the choice rests on.
type Facts struct {
	// Coop: the program said Hello on its checkpoint socket.
	Coop bool
	// CRIU is what vprocd found of CRIU at start.
	CRIU criu.State
	// Obstacles are what CRIU could not move of its process tree
	// (Obstacles); an error reading it is one.
	Obstacles []string
	// Owner is the program's uid: CRIU moves only root's (ByCRIU).
	Owner uint32
}

// ByCRIU says why CRIU moves only root's programs: criu dumps and
// restores as root, reopening by path, as root, the files and mappings
// its image names, and entering the program's namespaces; a user's
// program could steer that (a path replaced on the target, a namespace of
// its own) into root's hands. Until criu runs as the program's user, a
// user's program moves only cooperatively.
const ByCRIU = "CRIU moves only root's programs here (criu runs as root; a user's program could steer it): use the cooperative protocol"

// Choice is how a program moves: Mech, or 0 and Reason.
type Choice struct {
	Mech   migrate.Mechanism
	Reason string
}

// String is the MIGRATE column of ssi ps: "coop", "criu", or
// "no: " and the reason.
func (c Choice) String() string {
	if c.Mech != 0 {
		return c.Mech.String()
	}
	return "no: " + c.Reason
}

// Brief is String without the details in parentheses (the paths of the
// files it holds or maps, the sizes): what ssi ps shows every user,
// since /proc shows a process's files only to its owner.
func (c Choice) Brief() string {
	out := c.String()
	for {
		i := strings.Index(out, " (")
		if i < 0 {
			return out
		}
		j := strings.IndexByte(out[i:], ')')
		if j < 0 {
			return out
		}
		// The innermost: a path may hold parentheses of its own.
		if k := strings.LastIndex(out[i+2:i+j], " ("); k >= 0 {
			i += 2 + k
			j = strings.IndexByte(out[i:], ')')
		}
		out = out[:i] + out[i+j+1:]
	}
}

// Choose chooses the mechanism of a program.
func Choose(f Facts) Choice {
	switch {
	case f.Coop:
		return Choice{Mech: migrate.Cooperative}
	case f.CRIU.Status != criu.Ready:
		return Choice{Reason: "it does not speak the checkpoint protocol and CRIU is " + f.CRIU.String()}
	case f.Owner != 0:
		return Choice{Reason: "it does not speak the checkpoint protocol, and " + ByCRIU}
	case len(f.Obstacles) > 0:
		return Choice{Reason: "it does not speak the checkpoint protocol and CRIU cannot move it: " + strings.Join(f.Obstacles, "; ")}
	}
	return Choice{Mech: migrate.CRIU}
}

// maxObstacles bounds the reasons given (the first ones found).
const maxObstacles = 4

// maxTree bounds the processes of a tree looked at.
const maxTree = 4096

// Tree returns root and its descendants, root first, read from procfs
// (the children of each of their threads).
func Tree(procfs fs.FS, root int) []int {
	tree := []int{root}
	seen := map[int]bool{root: true}
	for i := 0; i < len(tree) && len(tree) < maxTree; i++ {
		p := strconv.Itoa(tree[i])
		tasks, _ := fs.ReadDir(procfs, p+"/task")
		for _, t := range tasks {
			b, _ := fs.ReadFile(procfs, p+"/task/"+t.Name()+"/children")
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil && c > 0 && !seen[c] {
					seen[c] = true
					tree = append(tree, c)
				}
			}
		}
	}
	return tree
}

// Obstacles returns what CRIU could not dump and restore on another node
// of the process tree of root: a terminal, locked or shared memory, a
// socket, a file other than a pipe and the null and random devices (no
// file is reopened on another node until the cluster has a filesystem of
// its own). Each names the process; nil when there is none.
func Obstacles(procfs fs.FS, root int) []string {
	var out []string
	seen := map[string]bool{}
	add := func(pid int, what string) bool {
		if !seen[what] { // once, for the first process (a child inherits its parent's files)
			seen[what] = true
			out = append(out, fmt.Sprintf("pid %d %s", pid, what))
		}
		return len(out) < maxObstacles
	}
	pg, sid, _ := groupOf(procfs, root)
	for _, pid := range Tree(procfs, root) {
		// Its freeze, resume and end signal its process group: a
		// process of the tree outside it would be left stopped at the
		// source, or never resumed at the target.
		if g, s, ok := groupOf(procfs, pid); ok && (g != pg || s != sid) {
			if !add(pid, "is in another process group or session than the program") {
				return out
			}
		}
		for _, o := range obstaclesOf(procfs, pid) {
			if !add(pid, o) {
				return out
			}
		}
	}
	return out
}

// groupOf reads the process group and session of pid from its stat.
func groupOf(procfs fs.FS, pid int) (pgrp, sid int, ok bool) {
	b, err := fs.ReadFile(procfs, strconv.Itoa(pid)+"/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp session ...: comm may hold spaces and
	// parentheses, so fields are counted after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return 0, 0, false
	}
	g, err1 := strconv.Atoi(f[2])
	s, err2 := strconv.Atoi(f[3])
	return g, s, err1 == nil && err2 == nil
}

// devices are the files a process may hold that exist alike on every
// node.
var devices = []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}

// obstaclesOf returns the obstacles of one process.
func obstaclesOf(procfs fs.FS, pid int) []string {
	p := strconv.Itoa(pid)
	var out []string
	st, err := fs.ReadFile(procfs, p+"/status")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // it ended meanwhile
		}
		return []string{"cannot be read: " + err.Error()}
	}
	if kb := statusKB(st, "VmLck:"); kb > 0 {
		out = append(out, fmt.Sprintf("locks memory (%d kB)", kb))
	}
	if maps, err := fs.ReadFile(procfs, p+"/maps"); err == nil {
		if m := sharedMapping(maps); m != "" {
			out = append(out, "shares memory ("+m+")")
		}
	}
	fds, err := fs.ReadDir(procfs, p+"/fd")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return append(out, "has descriptors that cannot be read: "+err.Error())
	}
	kinds := map[string]bool{}
	for _, e := range fds {
		target, err := fs.ReadLink(procfs, p+"/fd/"+e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if k := fileObstacle(target); k != "" && !kinds[k] {
			kinds[k] = true
			out = append(out, k)
		}
	}
	return out
}

// fileObstacle says what keeps the file a descriptor names from moving
// ("" for nothing).
func fileObstacle(target string) string {
	switch {
	case strings.HasPrefix(target, "pipe:["):
		return ""
	case slices.Contains(devices, target):
		return ""
	case strings.HasPrefix(target, "/dev/pts/"), strings.HasPrefix(target, "/dev/tty"), target == "/dev/console", target == "/dev/ptmx":
		return "holds a terminal (" + target + ")"
	case strings.HasPrefix(target, "socket:["):
		return "holds a socket"
	case strings.HasPrefix(target, "anon_inode:"):
		return "holds an " + target + " descriptor"
	case strings.HasPrefix(target, "/"):
		return "has a file open (" + target + ") that may not exist on another node"
	}
	return "holds " + target
}

// statusKB reads the kB of a field of /proc/PID/status (0 when absent).
func statusKB(st []byte, field string) int {
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// sharedMapping returns the first memory of /proc/PID/maps shared with
// other processes ("" for none): System V or POSIX shared memory, shared
// anonymous memory, a file mapped shared and writable. A file mapped
// shared and read-only (a locale cache) is mapped again from the same
// path.
func sharedMapping(maps []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || len(f[1]) != 4 || f[1][3] != 's' {
			continue
		}
		path := "anonymous"
		if len(f) >= 6 {
			path = strings.Join(f[5:], " ")
		}
		if f[1][1] == 'w' || path == "anonymous" || strings.HasPrefix(path, "/SYSV") || strings.HasPrefix(path, "/dev/shm/") || strings.HasPrefix(path, "/memfd:") {
			return path
		}
	}
	return ""
}
