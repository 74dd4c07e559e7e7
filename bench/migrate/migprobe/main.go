// Command migprobe takes bench/migrate's timings inside a lab node, so
// that no nsenter or host process is on the clock:
//
//	migprobe time -- CMD [ARG...]
//	    runs CMD (ssi migrate) as a shell would and prints its wall time
//	    and exit status
//	migprobe floor [-criu PATH] -- SHELL -c SCRIPT
//	    one same-node CRIU round: starts the bench's shell loop with its
//	    output on a pipe it reads, `criu dump`s it (plain: the loop is
//	    killed once dumped) and `criu restore`s it into a fresh PID and
//	    mount namespace under the holder vprocd uses (package criuhold),
//	    the same pipe plugged back in with --inherit-fd; it prints the
//	    dump's and the restore's wall times and the longest pause of the
//	    loop's output
//
// Each prints one JSON object; times are in nanoseconds.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/criuhold"
	"github.com/openssi/openssi/internal/criu"
)

// Timed is the answer of `migprobe time`.
type Timed struct {
	NS   int64  `json:"ns"`
	Code int    `json:"code"`
	Out  string `json:"out"`
}

// Floor is the answer of `migprobe floor`.
type Floor struct {
	// Dump is criu dump's wall time, Restore from the start of the
	// holder to its report that the loop is restored (and running).
	Dump    int64 `json:"dump_ns"`
	Restore int64 `json:"restore_ns"`
	// Gap is the longest pause between two lines of the loop's output
	// across the round, Interval the median pause before the dump.
	Gap      int64 `json:"gap_ns"`
	Interval int64 `json:"interval_ns"`
	// After is the median pause of the lines after the restore (the
	// loop keeps its pace).
	After int64 `json:"after_ns"`
	// Continuous: the counter went on with no gap and no repeat.
	Continuous bool   `json:"continuous"`
	Err        string `json:"err,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: migprobe time -- CMD [ARG...] | migprobe floor [-criu PATH] -- CMD [ARG...]")
		os.Exit(2)
	}
	var out any
	switch os.Args[1] {
	case "time":
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "migprobe time: no command")
			os.Exit(2)
		}
		out = timeCmd(args)
	case "floor":
		fs := flag.NewFlagSet("floor", flag.ExitOnError)
		bin := fs.String("criu", "/usr/local/sbin/criu", "the criu binary")
		_ = fs.Parse(os.Args[2:])
		if fs.NArg() == 0 {
			fmt.Fprintln(os.Stderr, "migprobe floor: no program")
			os.Exit(2)
		}
		f, err := floor(*bin, fs.Args())
		if err != nil {
			f.Err = err.Error()
		}
		out = f
	default:
		fmt.Fprintf(os.Stderr, "migprobe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}

func timeCmd(args []string) Timed {
	cmd := exec.Command(args[0], args[1:]...)
	began := time.Now()
	b, err := cmd.CombinedOutput()
	t := Timed{NS: int64(time.Since(began)), Out: strings.TrimSpace(string(b))}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		t.Code = ee.ExitCode()
	case err != nil:
		t.Code, t.Out = -1, err.Error()
	}
	return t
}

// lines records the loop's output as it comes: each number and when it
// was read.
type lines struct {
	mu   sync.Mutex
	nums []int
	at   []time.Time
	bad  int
	more chan struct{}
}

func (l *lines) read(f *os.File) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		now := time.Now()
		n, err := strconv.Atoi(sc.Text())
		l.mu.Lock()
		if err != nil {
			l.bad++
		} else {
			l.nums, l.at = append(l.nums, n), append(l.at, now)
		}
		l.mu.Unlock()
		select {
		case l.more <- struct{}{}:
		default:
		}
	}
}

func (l *lines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.nums)
}

// waitFor waits until at least n lines were read.
func (l *lines) waitFor(n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for l.count() < n {
		select {
		case <-l.more:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("the loop printed %d lines, want %d within %s", l.count(), n, timeout)
		}
	}
	return nil
}

func floor(bin string, argv []string) (Floor, error) {
	var f Floor
	r, w, err := os.Pipe()
	if err != nil {
		return f, err
	}
	defer r.Close()
	defer w.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return f, err
	}
	defer devnull.Close()
	loop := exec.Command(argv[0], argv[1:]...)
	loop.Stdin, loop.Stdout, loop.Stderr = devnull, w, w
	loop.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := loop.Start(); err != nil {
		return f, err
	}
	l := &lines{more: make(chan struct{}, 1)}
	go l.read(r)
	killed := false
	defer func() {
		if !killed {
			_ = loop.Process.Kill()
			_ = loop.Wait()
		}
	}()
	const before, after = 30, 30
	if err := l.waitFor(before, 10*time.Second); err != nil {
		return f, err
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", loop.Process.Pid))
	if err != nil || !strings.HasPrefix(link, "pipe:[") {
		return f, fmt.Errorf("the loop's stdout: %q %v", link, err)
	}
	dir, err := os.MkdirTemp("", "migprobe-floor-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Plain dump: criu kills the loop once its image is written.
	mark := l.count()
	began := time.Now()
	args := append(criu.DumpArgs(loop.Process.Pid, dir, true), "--manage-cgroups=ignore")
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return f, fmt.Errorf("criu dump: %v: %s%s", err, out, tail(filepath.Join(dir, "dump.log")))
	}
	f.Dump = int64(time.Since(began))
	_ = loop.Wait()
	killed = true

	// Restore under criuhold in a fresh PID and mount namespace, as
	// vprocd does, the loop's pipe given back as descriptor 4.
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return f, err
	}
	defer statusR.Close()
	pidfile := filepath.Join(dir, "restored.pid")
	rargs := append(criu.RestoreArgs(dir, pidfile, true), "--manage-cgroups=ignore", "--inherit-fd", fmt.Sprintf("fd[%d]:%s", criuhold.StatusFD+1, link))
	hold := &exec.Cmd{Path: "/proc/self/exe",
		Args:        append([]string{criuhold.Name}, criuhold.Args(pidfile, 1, append([]string{bin}, rargs...))...),
		ExtraFiles:  []*os.File{statusW, w},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Setsid: true}}
	restoring := time.Now()
	err = hold.Start()
	statusW.Close()
	if err != nil {
		return f, fmt.Errorf("start the holder: %w", err)
	}
	defer func() {
		_ = hold.Process.Kill() // the namespace, and the loop in it, end with it
		_ = hold.Wait()
	}()
	first, err := bufio.NewReader(statusR).ReadString('\n')
	f.Restore = int64(time.Since(restoring))
	if !strings.HasPrefix(first, "pid ") {
		return f, fmt.Errorf("criu restore: %q %v%s", strings.TrimSpace(first), err, tail(filepath.Join(dir, "restore.log")))
	}
	if err := l.waitFor(l.count()+after, 10*time.Second); err != nil {
		return f, fmt.Errorf("after the restore: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f.Interval = int64(medianGap(l.at[:mark]))
	f.Gap = int64(maxGap(l.at[max(mark-1, 0):]))
	f.After = int64(medianGap(l.at[len(l.at)-after:]))
	f.Continuous = l.bad == 0
	for i, n := range l.nums {
		if n != i+1 {
			f.Continuous = false
		}
	}
	return f, nil
}

// medianGap is the median pause between consecutive times.
func medianGap(at []time.Time) time.Duration {
	if len(at) < 2 {
		return 0
	}
	gaps := make([]time.Duration, 0, len(at)-1)
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// maxGap is the longest pause between consecutive times.
func maxGap(at []time.Time) time.Duration {
	var m time.Duration
	for i := 1; i < len(at); i++ {
		m = max(m, at[i].Sub(at[i-1]))
	}
	return m
}

// tail is the last lines of a criu log, for an error.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "\n" + strings.Join(ls[max(len(ls)-5, 0):], "\n")
}
