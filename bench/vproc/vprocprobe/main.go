// Command vprocprobe measures remote exec from inside a lab node, so that
// no nsenter or host process is on the clock: `ssi exec` as a whole
// process (what a user at a shell feels), a client/vproc Exec call, a
// fresh `ssh` and `ssh` through an open ControlMaster, each running
// `true` on the target; `ssi version` alone (start-up); execs per second
// with many concurrent callers; stdio throughput through `cat`; and `ssi
// ps` over all nodes. bench/vproc copies it into node 1 and reads the
// JSON it prints.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/openssi/openssi/client/vproc"
)

// Result is what vprocprobe prints; latencies are in nanoseconds.
type Result struct {
	Samples map[string][]int64 `json:"samples,omitempty"`
	// Rates are execs per second of the concurrent runs.
	Rates map[string]float64 `json:"rates,omitempty"`
	// Failed counts the failed runs of each latency variant (by its
	// name) and the failed execs of each concurrent run ("rate_" + name).
	Failed map[string]int64 `json:"failed,omitempty"`
	// Streams are MB/s (10^6 bytes) through cat; Checksums whether the
	// output's SHA-256 matched the input's.
	Streams   map[string]float64 `json:"streams,omitempty"`
	Checksums map[string]bool    `json:"checksums,omitempty"`
	// StreamCPU is the CPU seconds (user+system) each stdio run cost the
	// client process and, for ssi exec, vprocd on node1 and on the
	// target: where the time goes.
	StreamCPU map[string]StreamCPU `json:"stream_cpu,omitempty"`
}

// StreamCPU is the CPU seconds of one stdio run.
type StreamCPU struct {
	Client float64 `json:"client"`
	Origin float64 `json:"origin"`
	Target float64 `json:"target"`
}

type params struct {
	target     string // node number of the target, e.g. "2"
	host       string // its host name for ssh, e.g. "node2"
	runs       int
	psRuns     int
	callers    int
	duration   time.Duration
	streamMiB  int
	controlDir string
	only       string // "ps": only the ps latencies
}

func main() {
	var p params
	flag.StringVar(&p.target, "target", "2", "node number of the target")
	flag.StringVar(&p.host, "host", "node2", "the target's host name (ssh)")
	flag.IntVar(&p.runs, "runs", 200, "runs of each latency variant")
	flag.IntVar(&p.psRuns, "ps-runs", 50, "runs of ssi ps")
	flag.IntVar(&p.callers, "callers", 64, "concurrent callers of the throughput runs")
	flag.DurationVar(&p.duration, "duration", 10*time.Second, "length of each throughput run")
	flag.IntVar(&p.streamMiB, "stream-mib", 256, "MiB through cat in each stdio run")
	flag.StringVar(&p.controlDir, "control-dir", "/root/.ssh", "where the ssh ControlMaster's socket goes")
	flag.StringVar(&p.only, "only", "", "ps: only the ssi ps latencies; once: one client/vproc Exec of true on -target, then exit; dial: one client/vproc Loads call, then exit")
	flag.Parse()
	switch p.only {
	case "once", "dial":
		if err := once(p); err != nil {
			fmt.Fprintln(os.Stderr, "vprocprobe:", err)
			os.Exit(1)
		}
		return
	}
	r, err := run(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vprocprobe:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vprocprobe %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(p params) (*Result, error) {
	r := &Result{Samples: map[string][]int64{}, Rates: map[string]float64{}, Failed: map[string]int64{}, Streams: map[string]float64{}, Checksums: map[string]bool{}, StreamCPU: map[string]StreamCPU{}}
	ctx := context.Background()
	if p.only == "ps" {
		return r, measurePs(ctx, p, r)
	}
	sshArgs := []string{"-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none"}
	control := p.controlDir + "/bench-%r@%h:%p"
	muxArgs := []string{"-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=" + control}
	master := exec.Command("ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=yes", "-o", "ControlPath="+control, "-o", "ControlPersist=yes", "-N", "-f", p.host)
	if out, err := master.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("open the ssh ControlMaster: %v: %s", err, out)
	}
	defer exec.Command("ssh", "-o", "ControlPath="+control, "-O", "exit", p.host).Run() //nolint:errcheck

	c, err := vproc.New(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	scopes, err := newScopeTimer(ctx)
	if err != nil {
		return nil, err
	}
	defer scopes.close()
	target, _ := strconv.Atoi(p.target)
	libCall := func(c *vproc.Client) error {
		proc, err := c.Exec(ctx, target, vproc.Cmd{Args: []string{"true"}, Dir: "/", Stdin: bytes.NewReader(nil), Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			return err
		}
		st, err := proc.Wait()
		if err == nil && st.Code != 0 {
			err = fmt.Errorf("exit status %d %s", st.Code, st.Reason)
		}
		return err
	}
	// A variant whose f is nil times itself (self), leaving its set-up
	// off the clock.
	variants := []struct {
		name string
		f    func() error
		self func() (time.Duration, error)
	}{
		{"version", command("ssi", "version"), nil},
		{"exec_process", command("ssi", "exec", "-n", p.target, "--", "true"), nil},
		{"exec_call", func() error { return libCall(c) }, nil},
		{"exec_call_dial", func() error {
			c, err := vproc.New(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			return libCall(c)
		}, nil},
		{"ssh_fresh", command("ssh", append(sshArgs, p.host, "true")...), nil},
		{"ssh_mux", command("ssh", append(muxArgs, p.host, "true")...), nil},
		// Where a process's time goes: this probe as a fresh process
		// making one Exec call, and making one unary call only.
		{"probe_once", command("/proc/self/exe", "-only", "once", "-target", p.target), nil},
		{"probe_dial", command("/proc/self/exe", "-only", "dial"), nil},
		// The parts of a program's start on a node, run here: a plain
		// fork and exec of true, the same through vprocd's gate (vprocd
		// re-executed, then true), and a scope started as vprocd does,
		// on systemd's private socket and through the bus daemon.
		{"true", command("/bin/true"), nil},
		{"gate", gate, nil},
		{"scope_private", nil, scopes.private},
		{"scope_bus", nil, scopes.bus},
	}
	for i := range variants {
		if variants[i].f == nil {
			self := variants[i].self
			variants[i].f = func() error { _, err := self(); return err }
		}
	}
	// Warm every path once (page cache, the peer link, the ssh master).
	for _, v := range variants {
		if err := v.f(); err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
	}
	// Interleaved in a new random order each round, so a slow spell of
	// the machine (or what a fresh ssh leaves running) falls on every
	// variant alike.
	// A failed run (the lab's Consul losing its leader on this loaded
	// machine, a membership flap) is counted, not timed, and the run goes
	// on after a pause; more than a tenth of the runs failing ends it.
	failures := 0
	order := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < p.runs; i++ {
		order.Shuffle(len(variants), func(a, b int) { variants[a], variants[b] = variants[b], variants[a] })
		for _, v := range variants {
			t := time.Now()
			var err error
			var d time.Duration
			if v.self != nil {
				d, err = v.self()
			} else {
				err = v.f()
				d = time.Since(t)
			}
			if err != nil {
				failures++
				r.Failed[v.name]++
				logf("%s run %d failed (counted, not timed): %v", v.name, i, err)
				if failures > p.runs/10 {
					return nil, fmt.Errorf("%s run %d: %w (%d failed runs)", v.name, i, err, failures)
				}
				time.Sleep(time.Second)
				continue
			}
			r.Samples[v.name] = append(r.Samples[v.name], int64(d))
		}
		if (i+1)%50 == 0 {
			logf("latency: %d/%d runs of each", i+1, p.runs)
		}
	}
	for _, v := range []struct {
		name string
		f    func() error
	}{
		{"exec_process", command("ssi", "exec", "-n", p.target, "--", "true")},
		{"exec_call", func() error { return libCall(c) }},
		{"ssh_mux", command("ssh", append(muxArgs, p.host, "true")...)},
	} {
		rate, failed := throughput(p.callers, p.duration, v.f)
		r.Rates[v.name], r.Failed["rate_"+v.name] = rate, failed
		logf("throughput %s: %.0f execs/s, %d failed", v.name, rate, failed)
	}
	for _, v := range []struct {
		name string
		args []string
	}{
		{"exec_process", []string{"ssi", "exec", "-n", p.target, "--", "cat"}},
		{"ssh_fresh", append(append([]string{"ssh"}, sshArgs...), p.host, "cat")},
		{"ssh_mux", append(append([]string{"ssh"}, muxArgs...), p.host, "cat")},
	} {
		o0, t0 := vprocdCPU(""), vprocdCPU(p.target)
		mbs, ok, client, err := stream(v.args, p.streamMiB)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", v.name, err)
		}
		o1, t1 := vprocdCPU(""), vprocdCPU(p.target)
		r.Streams[v.name], r.Checksums[v.name] = mbs, ok
		r.StreamCPU[v.name] = StreamCPU{Client: client, Origin: o1 - o0, Target: t1 - t0}
		logf("stream %s: %.1f MB/s, checksum ok %v", v.name, mbs, ok)
	}
	return r, measurePs(ctx, p, r)
}

// gate runs true through vprocd's gate as vprocd's runner does: vprocd
// re-executed as "openssi-vproc-gate", opened by a byte on descriptor 3.
func gate() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	_, _ = w.Write([]byte{1})
	w.Close()
	cmd := &exec.Cmd{Path: "/usr/sbin/vprocd", Args: []string{"openssi-vproc-gate", "/bin/true", "true"}, ExtraFiles: []*os.File{r}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gate: %v: %s", err, out)
	}
	return nil
}

// scopeTimer starts transient scopes the way vprocd does, on both of
// systemd's connections.
type scopeTimer struct {
	priv, sys *sddbus.Conn
	n         int
}

func newScopeTimer(ctx context.Context) (*scopeTimer, error) {
	priv, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd's private socket: %w", err)
	}
	sys, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		priv.Close()
		return nil, fmt.Errorf("the system bus: %w", err)
	}
	return &scopeTimer{priv: priv, sys: sys}, nil
}

func (s *scopeTimer) close() { s.priv.Close(); s.sys.Close() }

func (s *scopeTimer) private() (time.Duration, error) { return s.scope(s.priv, "private") }
func (s *scopeTimer) bus() (time.Duration, error)     { return s.scope(s.sys, "bus") }

// scope starts a sleeping child, then a scope holding it as vprocd's
// SystemdScopes.Scope does (the time it returns: the call until systemd
// reports the job done), and ends the child.
func (s *scopeTimer) scope(c *sddbus.Conn, how string) (time.Duration, error) {
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	s.n++
	props := []sddbus.Property{
		sddbus.PropDescription("bench/vproc scope probe"),
		sddbus.PropSlice("user-0.slice"),
		sddbus.PropPids(uint32(child.Process.Pid)),
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
	done := make(chan string, 1)
	name := fmt.Sprintf("bench-vproc-%s-%d-%d.scope", how, os.Getpid(), s.n)
	t := time.Now()
	if _, err := c.StartTransientUnitContext(context.Background(), name, "replace", props, done); err != nil {
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	if r := <-done; r != "done" {
		return 0, fmt.Errorf("start %s: %s", name, r)
	}
	return time.Since(t), nil
}

// once makes one call in a fresh process: an Exec of true (once) or a
// Loads call (dial).
func once(p params) error {
	ctx := context.Background()
	t0 := time.Now()
	c, err := vproc.New(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if os.Getenv("VPROCPROBE_PHASES") != "" {
		fmt.Fprintf(os.Stderr, "new %s ", time.Since(t0))
	}
	if p.only == "dial" {
		_, err := c.Loads(ctx)
		return err
	}
	target, _ := strconv.Atoi(p.target)
	t := time.Now()
	proc, err := c.Exec(ctx, target, vproc.Cmd{Args: []string{"true"}, Dir: "/", Stdin: bytes.NewReader(nil), Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		return err
	}
	started := time.Since(t)
	st, err := proc.Wait()
	if err == nil && st.Code != 0 {
		err = fmt.Errorf("exit status %d %s", st.Code, st.Reason)
	}
	if os.Getenv("VPROCPROBE_PHASES") != "" {
		fmt.Fprintf(os.Stderr, "started %s exited %s\n", started, time.Since(t))
	}
	return err
}

// measurePs times `ssi ps` as a process and the client/vproc Ps call.
func measurePs(ctx context.Context, p params, r *Result) error {
	c, err := vproc.New(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	variants := []struct {
		name string
		f    func() error
	}{
		{"ps_process", command("ssi", "ps")},
		{"ps_call", func() error {
			t, err := c.Ps(ctx, vproc.PsFilter{})
			if err == nil && len(t.Failures) > 0 {
				err = fmt.Errorf("nodes without a table: %+v", t.Failures)
			}
			return err
		}},
	}
	for _, v := range variants {
		if err := v.f(); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	failures := 0
	for i := 0; i < p.psRuns; i++ {
		for _, v := range variants {
			t := time.Now()
			if err := v.f(); err != nil {
				failures++
				r.Failed[v.name]++
				logf("%s run %d failed (counted, not timed): %v", v.name, i, err)
				if failures > p.psRuns/10 {
					return fmt.Errorf("%s run %d: %w (%d failed runs)", v.name, i, err, failures)
				}
				time.Sleep(time.Second)
				continue
			}
			r.Samples[v.name] = append(r.Samples[v.name], int64(time.Since(t)))
		}
	}
	return nil
}

// command runs a program to its end, output discarded; a failure carries
// its output.
func command(name string, args ...string) func() error {
	return func() error {
		var out bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	}
}

// throughput runs f from callers goroutines for d and returns the
// completed calls per second and the failed ones.
func throughput(callers int, d time.Duration, f func() error) (float64, int64) {
	var done, failed atomic.Int64
	var once sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(); err != nil {
					if failed.Add(1) == 1 {
						logf("a failed call: %v", err)
					}
					continue
				}
				done.Add(1)
			}
		}()
	}
	time.Sleep(d)
	once.Do(func() { close(stop) })
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), failed.Load()
}

// vprocdCPU returns the CPU seconds vprocd has used on this node (node
// "") or on node (read there through ssi exec), or 0 when it cannot tell.
func vprocdCPU(node string) float64 {
	script := "cat /proc/$(systemctl show -p MainPID --value openssi-vprocd)/stat"
	cmd := exec.Command("sh", "-c", script)
	if node != "" {
		cmd = exec.Command("ssi", "exec", "-n", node, "--", "sh", "-c", script)
	}
	out, err := cmd.Output()
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis: utime and
	// stime are the 12th and 13th, in clock ticks (100 a second).
	i := bytes.LastIndexByte(out, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(out[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// stream pipes mib MiB of pseudo-random bytes through the command (a
// remote cat) and returns MB/s over the whole run (start-up included),
// whether the output's SHA-256 matches the input's, and the command's CPU
// seconds.
func stream(args []string, mib int) (float64, bool, float64, error) {
	cmd := exec.Command(args[0], args[1:]...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, false, 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, false, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	total := int64(mib) << 20
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, false, 0, err
	}
	sent := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		rng := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 1<<20)
		for left := total; left > 0; left -= int64(len(buf)) {
			_, _ = rng.Read(buf)
			h.Write(buf)
			if _, err := in.Write(buf); err != nil {
				break
			}
		}
		_ = in.Close()
		sent <- h.Sum(nil)
	}()
	h := sha256.New()
	n, cerr := io.Copy(h, out)
	werr := cmd.Wait()
	secs := time.Since(t).Seconds()
	want := <-sent
	if cerr != nil || werr != nil {
		return 0, false, 0, errors.Join(cerr, werr, errors.New(stderr.String()))
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return float64(n) / 1e6 / secs, n == total && bytes.Equal(h.Sum(nil), want), cpu, nil
}
