package server

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/coop"
	cpidpkg "github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/pgroup"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/daemons/vprocd/stdioflow"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// chunkSize is the size of the output chunks sent to the caller.
const chunkSize = stdioflow.Chunk

// stdinQueue bounds the stdin chunks waiting for the program to read
// them; past it the stream is not read (gRPC's flow control then stops
// the caller), so a signal waits behind at most this many chunks.
const stdinQueue = 4

// inputs is the caller's side of an exec stream after the request.
type inputs interface {
	Recv() (*vprocv1.ExecInput, error)
}

// sender sends replies on a stream, one at a time.
type sender struct {
	mu   sync.Mutex
	send func(*vprocv1.ExecOutput) error
}

func (s *sender) Send(m *vprocv1.ExecOutput) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send(m)
}

// exitOf returns the Exit reply of a status.
func exitOf(code, signal int, reason string) *vprocv1.ExecOutput {
	return &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Exit{Exit: &vprocv1.Exit{Code: int32(code), Signal: int32(signal), Reason: reason}}}
}

// run runs req for cred on this node, streaming its stdio over in and
// send, until it exits (or, detached, until it started). When ctx ends
// first (the caller is gone) its process group is killed, unless the
// stream broke because org's node went DOWN (see fate).
func (s *Server) run(ctx context.Context, in inputs, send func(*vprocv1.ExecOutput) error, cred runner.Cred, req *vprocv1.ExecRequest, org execOrigin) error {
	done, err := s.admit(cred.UID)
	if err != nil {
		return err
	}
	out := &sender{send: send}
	// Under systemd the program waits at its gate until it is in its
	// scope, so nothing it forks is left in vprocd's cgroup; a gate kept
	// ahead for this caller (s.warm) is in its scope already.
	spec := runner.Spec{Env: strs(req.Env), Dir: string(req.Cwd), Cred: cred, TTY: req.Tty, Detach: req.Detach,
		Gated: s.cfg.Scopes != nil}
	spec.Argv = strs(req.Argv)
	spec.NotePrefix = "ssi exec: "
	if req.Trace != nil {
		spec.NotePrefix = "ssi strace: "
	}
	if g, ok := in.(givenStdio); ok {
		// The caller's files are the program's: this vprocd keeps
		// no copy once it started.
		spec.Stdio = g.givenStdio()
		defer closeGiven(spec.Stdio)
	}
	if req.Size != nil {
		spec.Rows, spec.Cols = uint16(req.Size.Rows), uint16(req.Size.Cols)
	}
	var p *runner.Proc
	if req.Trace != nil {
		spec.Argv, err = s.straceArgv(ctx, cred.UID, req.Trace)
	}
	var mig *migProg
	if err == nil && req.Migratable {
		// Its checkpoint socket (cooplink.go); what a target needs to
		// start it again is what it was started with.
		var link *coopLink
		link, err = newCoopLink(s.cfg.CoopDir, cred.UID, cred.GID, coop.Limits{State: s.cfg.Migrate.StateLimit})
		if err == nil {
			mig = &migProg{link: link, prog: &vprocpeerv1.MovedProgram{Argv: req.Argv, Env: req.Env, Cwd: req.Cwd,
				Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups, Cpgid: int64(org.cpgid), Tty: org.tty, Origin: org.node}}
			spec.Env = append(slices.Clip(spec.Env), link.env(false)...)
			defer func() {
				if p == nil {
					link.close()
				}
			}()
		}
	}
	if err == nil {
		if s.warm != nil {
			p, err = s.warm.Start(spec)
		} else {
			p, err = runner.Start(spec)
		}
	}
	if err != nil {
		done()
		var se *runner.StartError
		if errors.As(err, &se) {
			return out.Send(exitOf(se.Code, 0, se.Msg))
		}
		if _, ok := status.FromError(err); ok {
			return err // a trace refused: no such process, not the caller's
		}
		return out.Send(exitOf(runner.ExitRefused, 0, err.Error()))
	}
	cpid := s.started(p.Pid, cred.UID, req, org, mig, p.Signal)
	log := s.log.WithField("cpid", cpid).WithField("uid", cred.UID)
	if mig != nil {
		mig.p = p
		go func() { _ = mig.link.accept(p.Pid, nil) }()
	}
	if s.cfg.Scopes != nil && !p.InScope {
		if err := s.cfg.Scopes.Scope(ctx, p.Pid, cred.UID, cpid); err != nil {
			// It runs all the same, accounted to vprocd.
			log.WithError(err).Warn("program not moved to a scope of its own")
		}
	}
	p.Open()
	started := &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: cpid, Node: s.cfg.Node, Pid: int32(p.Pid)}}}
	if req.Detach {
		log.Info("started a detached program")
		go func() { // reaps it; nothing else waits for it
			p.Wait()
			s.ended(cpidOf(cpid))
			done()
		}()
		return out.Send(started)
	}
	defer done()
	log.Debug("started a program")
	f := &fate{s: s, cpid: cpidOf(cpid), origin: org, p: p}
	if err := out.Send(started); err != nil {
		f.lost(false)
		p.Wait()
		p.CloseOutput()
		s.ended(f.cpid) // else its record outlives it, and a reused pid inherits the cpid
		return err
	}
	closeGiven(spec.Stdio)
	if p.Note != "" {
		_ = out.Send(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stderr{Stderr: []byte(spec.NotePrefix + p.Note + "\n")}})
	}
	return s.serve(ctx, in, out, p, f, mig, log)
}

// serve streams the stdio of the running program p over in and out until
// it exits, then sends its Exit; or, when it ended because it moved (a
// committed migration ended this copy), its output drained, Moved.
func (s *Server) serve(ctx context.Context, in inputs, out *sender, p *runner.Proc, f *fate, mig *migProg, log logrus.FieldLogger) error {

	var readers sync.WaitGroup
	pump := func(r io.Reader, wrap func([]byte) *vprocv1.ExecOutput) {
		defer readers.Done()
		buf := make([]byte, stdioflow.FirstRead)
		for {
			k, err := r.Read(buf)
			if k > 0 {
				// A large read is handed over as it is (a new buffer
				// for the next, larger after a full one); a small one
				// copied, so that a chatty program does not pin a
				// buffer per message.
				b := buf[:k]
				if next := stdioflow.NextRead(len(buf), k); next != len(buf) || k >= chunkSize/2 {
					buf = make([]byte, next)
				} else {
					b = append([]byte(nil), b...)
				}
				if out.Send(wrap(b)) != nil {
					f.lost(false)
					// Keep reading (and dropping) so the program is
					// not stuck on a full pipe while it dies.
					for {
						if _, err := r.Read(buf); err != nil {
							return
						}
					}
				}
			}
			if err != nil {
				return
			}
		}
	}
	if p.Stdout != nil {
		readers.Add(1)
		go pump(p.Stdout, func(b []byte) *vprocv1.ExecOutput {
			return &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: b}}
		})
	}
	if p.Stderr != nil {
		readers.Add(1)
		go pump(p.Stderr, func(b []byte) *vprocv1.ExecOutput {
			return &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stderr{Stderr: b}}
		})
	}

	exited := make(chan struct{})
	go s.feed(ctx, in, p, f, exited, log, mig)
	go func() {
		select {
		case <-ctx.Done():
			f.lost(false)
		case <-exited:
		}
	}()

	st := p.Wait()
	s.ended(f.cpid)
	close(exited)
	if mig != nil {
		mig.link.close()
		if mv := mig.movedTo(); mv != nil {
			// Its whole group was killed: its output ends; all of
			// it goes before the copy's (the origin attaches to that
			// after this Moved).
			readers.Wait()
			p.CloseOutput()
			moved := &vprocv1.Moved{Node: mv.Node, Move: mv.Move, StdinTaken: mig.in.takenAfterEnd()}
			log.WithField("node", mv.Node).Info("the program moved")
			return out.Send(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Moved{Moved: moved}})
		}
	}
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	t := time.NewTimer(s.cfg.OutputGrace)
	select {
	case <-drained:
	case <-t.C:
		// A process it left holds the output open: end the stream
		// without it.
	}
	t.Stop()
	p.CloseOutput()
	<-drained
	log.WithField("code", st.Code).Debug("program exited")
	return out.Send(exitOf(st.Code, st.Signal, ""))
}

// feed carries the caller's inputs to p until p exits: stdin through a
// bounded queue, signals and window sizes at once. When the stream fails
// it leaves p's fate to f (the caller is gone, or its node).
func (s *Server) feed(ctx context.Context, in inputs, p *runner.Proc, f *fate, exited <-chan struct{}, log interface{ Debug(...any) }, mig *migProg) {
	queue := make(chan []byte, stdinQueue)
	if mig != nil {
		go func() { <-exited; mig.in.ended() }() // a hold waiting wakes
	}
	go func(queue <-chan []byte) {
		broken := false
		for b := range queue {
			if mig != nil && mig.in.hold(b) {
				continue // checkpointed: kept for it, or for its copy
			}
			if !broken && p.Stdin == nil {
				broken = true // a stdin of the caller's own: nothing comes this way
			}
			if !broken {
				n, err := p.Stdin.Write(b)
				if mig != nil {
					mig.in.taken.Add(int64(n))
				}
				if err != nil {
					broken = true // the program closed its stdin: drop the rest
				}
			}
		}
		if mig != nil && mig.in.holdEOF() {
			return
		}
		_ = p.CloseStdin()
	}(queue)
	defer func() {
		if queue != nil {
			close(queue)
		}
	}()
	for {
		m, err := in.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return // half-closed: the end of stdin, the caller still reads
			}
			select {
			case <-exited:
			default:
				f.lost(errors.Is(err, errCallerGone))
			}
			return
		}
		if err := CheckInput(m); err != nil {
			log.Debug(err.Error())
			continue
		}
		switch k := m.Kind.(type) {
		case *vprocv1.ExecInput_Stdin:
			if queue != nil {
				select {
				case queue <- k.Stdin:
				case <-exited:
				case <-ctx.Done():
					return
				}
			}
		case *vprocv1.ExecInput_StdinEof:
			if queue != nil {
				close(queue)
				queue = nil
			}
		case *vprocv1.ExecInput_Signal:
			_ = p.Signal(syscall.Signal(k.Signal))
		case *vprocv1.ExecInput_Resize:
			_ = p.Resize(uint16(k.Resize.Rows), uint16(k.Resize.Cols))
		case *vprocv1.ExecInput_OutputClosed:
			// The caller's output lost its reader: so does the
			// program's (its next write there fails, as it would
			// have on the caller's pipe).
			if k.OutputClosed&passedStdout != 0 {
				p.CloseStdout()
			}
			if k.OutputClosed&passedStderr != 0 {
				p.CloseStderr()
			}
		}
	}
}

// givenStdio is an exec stream whose caller's stdio files are given to
// the program as its own (passedStream.give).
type givenStdio interface {
	givenStdio() [3]*os.File
}

// closeGiven closes this vprocd's copies of the files given to a program
// (a second close does nothing).
func closeGiven(files [3]*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// strs converts byte strings to Go strings (which hold any bytes).
func strs(b [][]byte) []string {
	out := make([]string, len(b))
	for i, x := range b {
		out[i] = string(x)
	}
	return out
}

// started records the program pid just started here for uid, and
// returns its cpid: the one its origin gave it, else (a local exec, an
// origin that gave none, a cpid in use here) the cpid of its pid here.
// signal is the program's (execRecord.signal).
func (s *Server) started(pid int, uid uint32, req *vprocv1.ExecRequest, org execOrigin, mig *migProg, signal func(syscall.Signal) error) int64 {
	plain := cpidOf(CPID(s.cfg.Node, pid))
	x := plain
	if org.cpid != 0 && org.node != s.cfg.Node {
		x = org.cpid
	}
	pr := pgroup.Proc{CPID: x, Node: s.cfg.Node, PID: int32(pid), PGID: org.cpgid, UID: uid, TTY: org.tty, Detached: req.Detach}
	if err := s.pgStep(pgroup.Started{Proc: pr}); err != nil && x != plain {
		s.log.WithError(err).WithField("cpid", x).Warn("the cpid the origin gave is in use here: naming the program by its pid")
		x, pr.CPID = plain, plain
		_ = s.pgStep(pgroup.Started{Proc: pr})
	}
	s.recs.add(x, &execRecord{pid: int32(pid), origin: org, attached: !req.Detach, mig: mig, signal: signal})
	return int64(x)
}

// ended forgets the program x that ran here.
func (s *Server) ended(x cpidpkg.CPID) {
	s.recs.remove(x)
	_ = s.pgStep(pgroup.Ended{CPID: x, Node: s.cfg.Node})
}
