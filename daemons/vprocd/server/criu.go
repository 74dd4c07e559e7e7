package server

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/daemons/vprocd/coop"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/criuhold"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	"github.com/openssi/openssi/daemons/vprocd/movable"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/internal/criu"
)

// This file is the CRIU mechanism of migration, for the programs started
// migratable that do not speak the checkpoint protocol:
//
//	Freeze  (source) `criu dump --leave-stopped` of its process tree into
//	        a private directory, which goes, as a tar, with the names of
//	        its stdio pipes, in the Image (the directory is removed)
//	Restore (target) unpack into a private directory; a holder
//	        (package criuhold), first process of a fresh PID namespace,
//	        runs `criu restore --leave-stopped` with new stdio pipes
//	        plugged in (--inherit-fd) in place of the source's, and
//	        reaps the program; vprocd knows it by its PID here
//	Resume  (target) SIGCONT to its process group
//	End     (source) SIGKILL to the stopped original's group
//	Thaw    (source) SIGCONT to it
//	Discard (target) SIGKILL to the restored copy's group (the holder
//	        then ends, and with it the namespace)
//
// The cpid stays: the target records the copy under it with its new pid.

// LeadSessionIfOutside makes this process the leader of a new session
// when the leader of its session lies outside its PID namespace (getsid
// reads 0: a container runtime's or a CI runner's session). The programs
// vprocd starts on pipes stay in its session, in process groups of their
// own (so that a SIGTSTP stops them: a group whose parent is in another
// session would be orphaned, and the kernel drops its stop signals), and
// CRIU refuses to dump a process whose session leader it cannot see. Under
// systemd, which makes every service lead a session, it does nothing.
func LeadSessionIfOutside() {
	if sid, err := unix.Getsid(0); err == nil && sid == 0 {
		_, _ = unix.Setsid()
	}
}

// criuWait bounds one criu dump or restore.
const criuWait = time.Minute

// stdioName is the file of the image that names the program's stdio
// (/proc/PID/fd/0..2's links, one a line).
const stdioName = "openssi-stdio"

// maxImageFiles bounds the files of an image unpacked.
const maxImageFiles = 10000

// moveChoice says how the program of rec can move (ssi ps -o migrate,
// the leveler: the obstacles of one reading).
func (s *Server) moveChoice(rec *execRecord) movable.Choice {
	return s.choose(rec, func(pid int) []string { return movable.Obstacles(s.procFS(), pid) })
}

// moveChoiceSettled is moveChoice for ssi migrate: the obstacles that
// remain over a few readings (settledObstacles).
func (s *Server) moveChoiceSettled(rec *execRecord) movable.Choice {
	return s.choose(rec, s.settledObstacles)
}

func (s *Server) choose(rec *execRecord, obstacles func(pid int) []string) movable.Choice {
	f := movable.Facts{Coop: rec.mig.link.linked() != nil, CRIU: s.cfg.Migrate.CRIU, Owner: rec.mig.prog.GetUid()}
	if !f.Coop && f.CRIU.Status == criu.Ready {
		f.Obstacles = obstacles(int(rec.pid))
	}
	return movable.Choose(f)
}

// criuFreeze dumps the process tree of pid (owned by uid), left stopped,
// and returns its image. What ssi migrate checked while the program ran
// is checked again: the owner before the dump, its memory against the
// state limit before (an image is at least its resident memory), and the
// obstacles on the stopped tree after (a file opened since would be
// reopened by criu, as root, on the target: a tree found with some is
// let run and dumped again, up to obstacleTries dumps, since they may be
// a child's passing state); a failure after the dump lets the tree run on
// (SIGCONT), as before it.
func (s *Server) criuFreeze(pid int, uid uint32) (image []byte, err error) {
	st := s.cfg.Migrate.CRIU
	if st.Status != criu.Ready {
		return nil, fmt.Errorf("CRIU is %v", st)
	}
	if uid != 0 {
		return nil, errors.New(movable.ByCRIU)
	}
	rss, limit := treeRSS(s.procFS(), pid), s.stateLimit()
	if rss > limit {
		return nil, fmt.Errorf("its memory (%d MiB resident) is over the limit of a move's image, %d MiB (vprocd.migrate.coop_state_limit)", rss>>20, limit>>20)
	}
	if err := s.roomForImage(rss); err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		image, obs, err := s.criuDump(st.Bin, pid)
		if err != nil || len(obs) == 0 {
			return image, err
		}
		// Stopped with an obstacle: it runs on, and is dumped again
		// while that may be a child's passing state (obstacleTries).
		contTree(s.procFS(), pid)
		if try == obstacleTries {
			return nil, errors.New("CRIU cannot move it: " + strings.Join(obs, "; "))
		}
		time.Sleep(obstacleRetry)
	}
}

// criuDump dumps the process tree of pid, left stopped, and returns its
// image; or, when the stopped tree has obstacles, those, the tree still
// stopped. A failure lets the tree run on.
func (s *Server) criuDump(bin string, pid int) (image []byte, obstacles []string, err error) {
	links := stdioLinks(pid)
	dir, err := s.imageDir("dump-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), criuWait)
	defer cancel()
	// A copy restored here runs in a PID namespace of its own whose first
	// process (its holder) is not in its tree: criu dumps it from inside
	// that namespace, by its pid there.
	nspid := nsPID(pid)
	args := append(criu.DumpArgs(nspid, dir, true), "--leave-stopped", "--manage-cgroups=ignore")
	if nspid != pid {
		args = append([]string{"--target", strconv.Itoa(pid), "--pid", "--mount", "--", bin}, args...)
		bin = "nsenter"
	}
	began := time.Now()
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("criu dump: %v: %s", err, criuError(dir, "dump.log", out))
	}
	defer func() {
		if err != nil {
			contTree(s.procFS(), pid)
		}
	}()
	if obs := movable.Obstacles(s.procFS(), pid); len(obs) > 0 {
		return nil, obs, nil
	}
	s.log.WithField("pid", pid).WithField("took", time.Since(began).Round(time.Millisecond)).Debug("criu dump")
	if err := os.WriteFile(filepath.Join(dir, stdioName), []byte(strings.Join(links[:], "\n")+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	image, err = tarDir(dir)
	return image, nil, err
}

// A shell loop's child between its fork and its exec's first steps holds
// the dynamic loader's files open (/etc/ld.so.cache, libc, the gconv and
// locale caches) for a moment: an obstacle seen once may be that passing
// state. So a move reads the obstacles of a running tree, and dumps a
// tree found with some when stopped, up to obstacleTries times,
// obstacleRetry apart, before it refuses: a program that holds a file
// open keeps it through every try.
const (
	obstacleTries = 4
	obstacleRetry = 5 * time.Millisecond
)

// settledObstacles returns the obstacles of the running tree of pid seen
// in each of obstacleTries readings (nil at the first reading without
// any, or once none was in every reading so far): a child's passing open
// file names another pid, or none, the next time.
func (s *Server) settledObstacles(pid int) []string {
	var stayed []string
	for try := 1; try <= obstacleTries; try++ {
		if try > 1 {
			time.Sleep(obstacleRetry)
		}
		obs := movable.Obstacles(s.procFS(), pid)
		if try > 1 {
			obs = slices.DeleteFunc(obs, func(o string) bool { return !slices.Contains(stayed, o) })
		}
		if len(obs) == 0 {
			return nil
		}
		stayed = obs
	}
	return stayed
}

// imageDir makes a private directory for one image under vprocd's
// runtime directory: /run is a tmpfs, so an image goes from criu dump to
// criu restore through memory and the peer link, never a disk (as /tmp may
// be).
func (s *Server) imageDir(prefix string) (string, error) {
	base, err := s.runSubdir("images")
	if err != nil {
		return "", fmt.Errorf("CRIU images: %w", err)
	}
	return os.MkdirTemp(base, prefix)
}

// roomForImage refuses an image of about n bytes when the filesystem of
// the runtime directory (/run, a tmpfs shared with every daemon) has less
// free; it says nothing when that cannot be read.
func (s *Server) roomForImage(n uint64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(s.runDir(), &st); err != nil {
		return nil
	}
	if free := st.Bavail * uint64(st.Bsize); n > free {
		return fmt.Errorf("its image (about %d MiB) does not fit in the %d MiB free under %s", n>>20, free>>20, s.runDir())
	}
	return nil
}

// stateLimit is the bound of a move's state or image.
func (s *Server) stateLimit() uint64 {
	if l := s.cfg.Migrate.StateLimit; l > 0 {
		return uint64(l)
	}
	return coop.DefaultStateLimit
}

// treeRSS is the resident memory of pid's process tree, in bytes.
func treeRSS(procfs fs.FS, pid int) uint64 {
	var sum uint64
	for _, p := range movable.Tree(procfs, pid) {
		b, err := fs.ReadFile(procfs, strconv.Itoa(p)+"/status")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if f, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if kb, err := strconv.ParseUint(strings.Fields(f)[0], 10, 64); err == nil {
					sum += kb << 10
				}
			}
		}
	}
	return sum
}

// contTree lets pid's process tree, left stopped by a dump, run on.
func contTree(procfs fs.FS, pid int) {
	for _, p := range movable.Tree(procfs, pid) {
		_ = syscall.Kill(p, syscall.SIGCONT)
	}
}

// nsPID is the pid of process pid in its own PID namespace (pid when it
// runs in this one, or when that cannot be read).
func nsPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return pid
	}
	for line := range strings.Lines(string(b)) {
		if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
			ids := strings.Fields(f)
			if n, err := strconv.Atoi(ids[len(ids)-1]); err == nil && len(ids) > 1 && n > 0 {
				return n
			}
		}
	}
	return pid
}

// stdioLinks are what descriptors 0, 1 and 2 of pid are ("" for none).
func stdioLinks(pid int) [3]string {
	var l [3]string
	for i := range l {
		l[i], _ = os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(i))
	}
	return l
}

// criuError is the reason of a failed criu run: the last error of its
// log before its "FAILED" (criu goes on after some, such as a limit it
// cannot raise), else its output's last line.
func criuError(dir, log string, out []byte) string {
	b, _ := os.ReadFile(filepath.Join(dir, log))
	last := ""
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "Error") && !strings.Contains(line, "FAILED") {
			last = line
		}
	}
	if last != "" {
		return clipLine(last)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return clipLine(lines[len(lines)-1])
}

func clipLine(l string) string {
	l = strings.TrimSpace(l)
	if len(l) > 200 {
		l = l[:200] + "..."
	}
	return l
}

// tarDir returns the regular files of dir as a tar.
func tarDir(dir string) ([]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// untarDir unpacks an image into dir: regular files of plain names only.
func untarDir(image []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(image))
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("an image that is not a tar: %w", err)
		}
		if n >= maxImageFiles || h.Typeflag != tar.TypeReg || h.Name == "" || h.Name != filepath.Base(h.Name) || h.Name == "." || h.Name == ".." {
			return fmt.Errorf("an image with an unexpected entry %q", clipLine(h.Name))
		}
		f, err := os.OpenFile(filepath.Join(dir, h.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// criuRestore restores the program of img here, stopped, in a fresh PID
// namespace, with new stdio pipes.
func (s *Server) criuRestore(mv migrate.Move, img *image) (*copyHere, error) {
	st := s.cfg.Migrate.CRIU
	if st.Status != criu.Ready {
		return nil, fmt.Errorf("CRIU on node %d is %v", s.cfg.Node, st)
	}
	if img == nil {
		return nil, errors.New("no image")
	}
	pr := img.prog
	done, err := s.admit(pr.Uid)
	if err != nil {
		return nil, err
	}
	if err := s.roomForImage(uint64(len(img.state))); err != nil {
		done()
		return nil, err
	}
	dir, err := s.imageDir("restore-")
	if err != nil {
		done()
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, err := s.criuStart(st.Bin, dir, img.state)
	if err != nil {
		done()
		return nil, err
	}
	// The image says who the program is: it must be the user the move
	// names (whose execs admit counted), never anyone else.
	if err := sameUser(p.Pid, pr.Uid, pr.Gid); err != nil {
		p.Kill()
		p.Wait()
		p.CloseOutput()
		done()
		return nil, err
	}
	x := cpid.CPID(mv.CPID)
	// Its scope is made while the move is decided (systemd takes about as
	// long as the protocol's rounds): it stays stopped until both are
	// done (resume waits for scoped).
	scoped := make(chan struct{})
	if s.cfg.Scopes != nil {
		go func() {
			defer close(scoped)
			if err := s.cfg.Scopes.Scope(context.Background(), p.Pid, pr.Uid, int64(x)); err != nil {
				s.log.WithError(err).Warn("moved program not in a scope of its own")
			}
		}()
	} else {
		close(scoped)
	}
	// A checkpoint socket it does not use: it moves through CRIU again.
	link, err := newCoopLink(s.cfg.CoopDir, pr.Uid, pr.Gid, coop.Limits{State: s.cfg.Migrate.StateLimit})
	if err != nil {
		<-scoped // as discard: not while systemd may act on its pid
		p.Kill()
		p.Wait()
		p.CloseOutput()
		done()
		return nil, err
	}
	org := movedOrigin(x, pr)
	return &copyHere{move: mv, prog: pr, p: p, link: link, done: done, cpid: x, org: org, ready: make(chan struct{}),
		unmark: s.markHeld(p.Pid), scoped: scoped}, nil
}

// criuStart unpacks image into dir and restores it under a holder.
func (s *Server) criuStart(bin, dir string, image []byte) (*runner.Proc, error) {
	if err := untarDir(image, dir); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, stdioName))
	if err != nil {
		return nil, errors.New("an image without its stdio")
	}
	links := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(links) != 3 {
		return nil, errors.New("an image with a bad stdio")
	}
	// The program's new pipes: vprocd's ends, and the program's given
	// to the holder (descriptors 4..) for criu's --inherit-fd.
	var (
		mine, theirs []*os.File
		ends         [3]*os.File
		inherit      []string
		seen         = map[string]bool{}
	)
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	for i, l := range links {
		if !strings.HasPrefix(l, "pipe:[") || seen[l] {
			continue // not a pipe (criu reopens it), or one already plugged (2>&1)
		}
		seen[l] = true
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(mine)
			closeAll(theirs)
			return nil, err
		}
		if i == 0 {
			ends[i] = w
			mine, theirs = append(mine, w), append(theirs, r)
		} else {
			ends[i] = r
			mine, theirs = append(mine, r), append(theirs, w)
		}
		inherit = append(inherit, "--inherit-fd", fmt.Sprintf("fd[%d]:%s", criuhold.StatusFD+len(theirs), l))
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		closeAll(mine)
		closeAll(theirs)
		return nil, err
	}
	pidfile := filepath.Join(dir, "restored.pid")
	args := append(criu.RestoreArgs(dir, pidfile, true), "--leave-stopped", "--manage-cgroups=ignore")
	args = append(args, inherit...)
	cmd := &exec.Cmd{Path: "/proc/self/exe",
		Args:        append([]string{criuhold.Name}, criuhold.Args(pidfile, len(theirs), append([]string{bin}, args...))...),
		ExtraFiles:  append([]*os.File{statusW}, theirs...),
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Setsid: true}}
	began := time.Now()
	err = cmd.Start()
	statusW.Close()
	closeAll(theirs)
	if err != nil {
		statusR.Close()
		closeAll(mine)
		return nil, fmt.Errorf("start the restore's holder: %w", err)
	}
	lines := make(chan string, 2)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(statusR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		statusR.Close()
	}()
	fail := func(err error) (*runner.Proc, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		closeAll(mine)
		return nil, err
	}
	var first string
	select {
	case first = <-lines:
	case <-time.After(criuWait):
		return fail(errors.New("criu restore did not finish in time"))
	}
	nspid, ok := strings.CutPrefix(first, "pid ")
	if !ok {
		reason := strings.TrimPrefix(first, "fail ")
		if reason == "" {
			reason = "the restore's holder ended"
		}
		if strings.HasPrefix(reason, "criu restore") {
			reason = "criu restore: " + criuError(dir, "restore.log", []byte(reason))
		}
		return fail(errors.New(reason))
	}
	pid, err := hostPID(cmd.Process.Pid, nspid)
	if err != nil {
		return fail(err)
	}
	s.log.WithField("pid", pid).WithField("took", time.Since(began).Round(time.Millisecond)).Debug("criu restore")
	wait := func() runner.Status {
		st := runner.Status{Code: 1}
		got := false
		for l := range lines {
			if w, ok := strings.CutPrefix(l, "exit "); ok {
				if ws, err := strconv.ParseUint(w, 10, 32); err == nil {
					st, got = runner.StatusOf(syscall.WaitStatus(ws)), true
				}
			}
		}
		_ = cmd.Wait()
		if !got {
			// The holder was killed: so was the program.
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				st = runner.StatusOf(ws)
			}
		}
		return st
	}
	return runner.Adopt(pid, ends[0], ends[1], ends[2], wait), nil
}

// sameUser checks that process pid runs as uid and gid, all of its ids
// (real, effective, saved, filesystem).
func sameUser(pid int, uid, gid uint32) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return fmt.Errorf("the restored program: %w", err)
	}
	want := map[string]string{"Uid:": strconv.FormatUint(uint64(uid), 10), "Gid:": strconv.FormatUint(uint64(gid), 10)}
	found := 0
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || want[f[0]] == "" {
			continue
		}
		found++
		for _, id := range f[1:] {
			if id != want[f[0]] {
				return fmt.Errorf("the restored program runs with %s %s, not the %s of the program moved", strings.TrimSuffix(f[0], ":"), strings.Join(f[1:], " "), want[f[0]])
			}
		}
	}
	if found != 2 {
		return errors.New("the restored program's ids cannot be read")
	}
	return nil
}

// hostPID is the PID here of the holder's child whose PID in its
// namespace is nspid.
func hostPID(holder int, nspid string) (int, error) {
	h := strconv.Itoa(holder)
	b, err := os.ReadFile("/proc/" + h + "/task/" + h + "/children")
	if err != nil {
		return 0, fmt.Errorf("the restored program's pid: %w", err)
	}
	for _, c := range strings.Fields(string(b)) {
		st, err := os.ReadFile("/proc/" + c + "/status")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(st)) {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				ids := strings.Fields(f)
				if len(ids) >= 2 && ids[len(ids)-1] == nspid {
					return strconv.Atoi(ids[0])
				}
			}
		}
	}
	return 0, fmt.Errorf("the restored program (pid %s in its namespace) is not the holder's child", nspid)
}

// fillMigrate says in the rows of the programs started migratable here
// how each would move, briefly: every user reads the table, and the
// details (the paths of the files a program holds) are its owner's; ssi
// migrate says them to the owner.
func (s *Server) fillMigrate(rows []proctable.Row) {
	for i := range rows {
		if rec, ok := s.migrating(rows[i].CPID); ok && rec.pid == rows[i].PID {
			rows[i].Migrate = s.moveChoice(rec).Brief()
		}
	}
}
