package server

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/load"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// This file is the shell of daemons/vprocd/load: the clock, the /proc
// reads and the sends of the MOSIX-style exchange (RunLoad), the peer's
// Push, the local API's load queries and placement, and the programs
// registered for load leveling.

// LoadConfig configures the load exchange and placement.
type LoadConfig struct {
	// Interval is how often the node measures its load and sends it to
	// one peer (default 1s; shorter in tests).
	Interval time.Duration
	// Margin is placement's stability margin (load.Config.Margin).
	Margin float64
	// ReadProc reads /proc/<name> (default: the file; tests inject).
	ReadProc func(name string) ([]byte, error)
	// Runnable, when set, counts this node's runnable tasks for the run
	// queue in place of /proc/stat's procs_running, which counts every
	// task of the kernel: set it when the node is a container sharing its
	// kernel with others (the lab's nodes), else every node measures the
	// same host and placement follows noise (proctable.Reader.Runnable).
	Runnable func() (uint32, error)
	// RunnableSamples is how many times Runnable is read per measure,
	// spread over a tenth of the interval each, the median taken
	// (default 1). An instant's count on a host whose CPUs are shared
	// holds every thread that waits for one (a Consul server's, criu's
	// during a move): single readings a few tasks off made the leveler
	// move processes back and forth.
	RunnableSamples int
	// TaskBusy, when set, reads the busy time (ran or waited for a CPU)
	// of each of this node's tasks (proctable.Reader.TaskBusy), and the
	// run queue is their average over the last interval
	// (load.AverageRunQueue) in place of Runnable's count at an instant.
	// It is what a node in a container uses where the kernel keeps
	// schedstat: on a host whose CPUs its nodes share, an instant's count
	// holds whichever daemon's thread is waiting for a CPU just then, and
	// moved processes on the leveler's word after it had balanced.
	TaskBusy func() (map[int32]time.Duration, error)
	// LoadLevel lists the programs of openssi.yaml (vprocd.loadlevel)
	// that an exec without a node places by load.
	LoadLevel []string
	// Levels holds the runtime list of such programs (`ssi loadlevel`);
	// nil: none may be added.
	Levels LevelStore
}

// LevelStore holds the runtime list of programs placed by load, shared by
// the cluster (Consul KV under openssi/vproc/loadlevel/ in vprocd).
type LevelStore interface {
	List(ctx context.Context) ([]string, error)
	Add(ctx context.Context, name string) error
	Remove(ctx context.Context, name string) error
}

// loadState is the Server's load window and leveling lists.
type loadState struct {
	cfg LoadConfig

	mu      sync.Mutex
	w       *load.Window
	r       *rand.Rand
	config  map[string]bool
	runtime map[string]bool
	sending bool
	lastErr string // the last measuring or listing error logged

	// The previous reading of TaskBusy and when it was taken (measure's
	// own: RunLoad's goroutine).
	prevBusy   load.TaskBusy
	prevBusyAt time.Time
}

func newLoadState(self uint32, cfg LoadConfig) *loadState {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.ReadProc == nil {
		cfg.ReadProc = func(name string) ([]byte, error) { return os.ReadFile("/proc/" + name) }
	}
	l := &loadState{cfg: cfg, w: load.New(load.Config{Self: self, Margin: cfg.Margin}),
		r: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), config: map[string]bool{}, runtime: map[string]bool{}}
	for _, n := range cfg.LoadLevel {
		l.config[n] = true
	}
	return l
}

// membership feeds a membership change to the window.
func (l *loadState) membership(n uint32, up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Membership(n, up)
}

// RunLoad measures this node's load every LoadConfig.Interval, sends it
// to one UP peer chosen at random and refreshes the runtime list of
// programs placed by load, until ctx ends.
func (s *Server) RunLoad(ctx context.Context) {
	t := time.NewTicker(s.load.cfg.Interval)
	defer t.Stop()
	for {
		s.loadTick(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadTick is one round of the exchange at now.
func (s *Server) loadTick(ctx context.Context, now time.Time) {
	l := s.load
	v, merr := s.measure(now)
	l.mu.Lock()
	if merr == nil {
		l.w.Measured(now, v)
	}
	to, v, ok := l.w.Tick(now, l.r)
	send := ok && !l.sending
	if send {
		l.sending = true
	}
	l.mu.Unlock()
	s.loadError(merr)
	if send {
		go s.push(ctx, to, v)
	}
	if l.cfg.Levels != nil {
		lctx, cancel := context.WithTimeout(ctx, max(l.cfg.Interval, holderTimeout))
		names, err := l.cfg.Levels.List(lctx)
		cancel()
		if err == nil {
			l.setRuntime(names)
		} else if ctx.Err() == nil {
			s.loadError(err)
		}
	}
}

// loadError logs a measuring or listing error when it differs from the
// last one logged.
func (s *Server) loadError(err error) {
	l := s.load
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	l.mu.Lock()
	changed := msg != l.lastErr
	l.lastErr = msg
	l.mu.Unlock()
	if changed && err != nil {
		s.log.WithError(err).Warn("load information")
	}
}

// measure reads this node's load vector.
func (s *Server) measure(now time.Time) (load.Vector, error) {
	var texts [3][]byte
	for i, name := range []string{"loadavg", "stat", "meminfo"} {
		b, err := s.load.cfg.ReadProc(name)
		if err != nil {
			return load.Vector{}, err
		}
		texts[i] = b
	}
	v, err := load.Measure(s.cfg.Node, now, texts[0], texts[1], texts[2])
	if err == nil && s.load.cfg.TaskBusy != nil {
		v.RunQueue, v.RunQueueAvg, err = s.averageRunQueue(now)
		return v, err
	}
	if err != nil || s.load.cfg.Runnable == nil {
		return v, err
	}
	samples := make([]uint32, 0, max(s.load.cfg.RunnableSamples, 1))
	for i := range cap(samples) {
		if i > 0 {
			time.Sleep(s.load.cfg.Interval / 10)
		}
		n, err := s.load.cfg.Runnable()
		if err != nil {
			return load.Vector{}, err
		}
		samples = append(samples, n)
	}
	slices.Sort(samples)
	v.RunQueue = max(samples[len(samples)/2], 1) - 1 // the median, less the measuring task, as Measure does
	return v, nil
}

// averageRunQueue is this node's run queue averaged since the previous
// measure (the first, at start: over a tenth of the interval), rounded
// and as it is.
func (s *Server) averageRunQueue(now time.Time) (uint32, float64, error) {
	l := s.load
	cur, err := l.cfg.TaskBusy()
	if err != nil {
		return 0, 0, err
	}
	prev, dt, at := l.prevBusy, now.Sub(l.prevBusyAt), now
	if prev == nil || dt <= 0 {
		began := time.Now()
		time.Sleep(l.cfg.Interval / 10)
		prev = cur
		if cur, err = l.cfg.TaskBusy(); err != nil {
			return 0, 0, err
		}
		dt = time.Since(began)
		at = now.Add(dt) // when cur was read, on now's clock
	}
	l.prevBusy, l.prevBusyAt = cur, at
	avg := load.AverageRunQueue(prev, cur, dt)
	return load.RoundRunQueue(avg), avg, nil
}

// push sends v to node to's vprocd; one send at a time, each bounded by
// the interval, so a slow peer never piles sends up.
func (s *Server) push(ctx context.Context, to uint32, v load.Vector) {
	defer func() {
		s.load.mu.Lock()
		s.load.sending = false
		s.load.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, max(s.load.cfg.Interval, 500*time.Millisecond))
	defer cancel()
	conn, err := s.peer(ctx, to)
	if err == nil {
		_, err = vprocpeerv1.NewVprocLoadPeerClient(conn).Push(ctx, vectorProto(v))
	}
	if err != nil && ctx.Err() == nil {
		s.log.WithError(err).WithField("to", to).Debug("load vector not sent")
	}
}

func vectorProto(v load.Vector) *vprocv1.LoadVector {
	return &vprocv1.LoadVector{Node: v.Node, RunQueue: v.RunQueue, RunQueueAvg: v.RunQueueAvg, Load1: v.Load1, Cpus: v.CPUs, FreeMem: v.FreeMem,
		AtUnixNano: v.At.UnixNano()}
}

func vectorOf(m *vprocv1.LoadVector) load.Vector {
	return load.Vector{Node: m.GetNode(), RunQueue: m.GetRunQueue(), RunQueueAvg: m.GetRunQueueAvg(), Load1: m.GetLoad1(), CPUs: m.GetCpus(),
		FreeMem: m.GetFreeMem(), At: time.Unix(0, m.GetAtUnixNano())}
}

// heard takes a peer's vector.
func (l *loadState) heard(now time.Time, v load.Vector) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Heard(now, v)
}

// place chooses the node for one new program.
func (l *loadState) place(now time.Time) (uint32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Place(now, nil)
}

func (l *loadState) setRuntime(names []string) {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runtime = m
}

// leveled reports whether program is registered for load leveling.
func (l *loadState) leveled(program string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.config[program] || l.runtime[program]
}

// levelNode returns the node an exec of argv without a node runs on: the
// node placement chooses when its program is registered for load
// leveling, else 0 (this node; also when there is no load information).
func (s *Server) levelNode(argv [][]byte) uint32 {
	if len(argv) == 0 || !s.load.leveled(load.ProgramOf(string(argv[0]))) {
		return 0
	}
	n, err := s.load.place(time.Now())
	if err != nil {
		return 0
	}
	return n
}

// loadPeer is the load exchange's peer service.
type loadPeer struct {
	vprocpeerv1.UnimplementedVprocLoadPeerServer
	s *Server
}

// Push takes a peer's vector, believed only from the vprocd of the node
// it names.
func (p loadPeer) Push(ctx context.Context, m *vprocv1.LoadVector) (*vprocpeerv1.PushReply, error) {
	if m.GetNode() == 0 {
		return nil, status.Error(codes.InvalidArgument, "vproc: a load vector of node 0")
	}
	if err := p.s.peers.RequireNode(ctx, m.GetNode()); err != nil {
		return nil, err
	}
	if err := p.s.load.heard(time.Now(), vectorOf(m)); err != nil {
		return nil, status.Error(codes.InvalidArgument, "vproc: "+err.Error())
	}
	return &vprocpeerv1.PushReply{}, nil
}

func registerLoadPeer(g *grpc.Server, s *Server) {
	vprocpeerv1.RegisterVprocLoadPeerServer(g, loadPeer{s: s})
}

// loadAPI is the local API's load information and placement.
type loadAPI struct {
	vprocv1.UnimplementedVprocLoadServer
	s *Server
}

func registerLoadAPI(g *grpc.Server, s *Server) {
	vprocv1.RegisterVprocLoadServer(g, loadAPI{s: s})
}

// Loads returns what this node believes of the cluster's load.
func (a loadAPI) Loads(context.Context, *vprocv1.LoadsRequest) (*vprocv1.LoadsReply, error) {
	l := a.s.load
	now := time.Now()
	l.mu.Lock()
	es := l.w.Vectors(now)
	l.mu.Unlock()
	r := &vprocv1.LoadsReply{Node: a.s.cfg.Node, NowUnixNano: now.UnixNano()}
	for _, e := range es {
		r.Entries = append(r.Entries, &vprocv1.LoadEntry{Vector: vectorProto(e.Vector), Self: e.Self,
			HeardUnixNano: e.Heard.UnixNano(), InFlight: uint32(e.InFlight), Score: e.Score})
	}
	return r, nil
}

// Place chooses a node for one new program (`ssi exec --auto`).
func (a loadAPI) Place(context.Context, *vprocv1.PlaceRequest) (*vprocv1.PlaceReply, error) {
	n, err := a.s.load.place(time.Now())
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, "vproc: "+err.Error())
	}
	return &vprocv1.PlaceReply{Node: n}, nil
}

// LoadLevels lists the programs placed by load.
func (a loadAPI) LoadLevels(context.Context, *vprocv1.LoadLevelsRequest) (*vprocv1.LoadLevelsReply, error) {
	l := a.s.load
	l.mu.Lock()
	r := &vprocv1.LoadLevelsReply{}
	for n := range l.config {
		r.Config = append(r.Config, n)
	}
	for n := range l.runtime {
		r.Runtime = append(r.Runtime, n)
	}
	l.mu.Unlock()
	slices.Sort(r.Config)
	slices.Sort(r.Runtime)
	return r, nil
}

// SetLoadLevel adds or removes a program of the runtime list, for root
// only (the list decides where every user's programs run).
func (a loadAPI) SetLoadLevel(ctx context.Context, req *vprocv1.SetLoadLevelRequest) (*vprocv1.SetLoadLevelReply, error) {
	caller, ok := localapi.CallerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "vproc: the caller's credentials are unknown")
	}
	if caller.UID != 0 {
		return nil, status.Errorf(codes.PermissionDenied, "vproc: only root may change the programs placed by load (caller uid %d)", caller.UID)
	}
	name := req.GetName()
	if err := load.CheckProgram(name); err != nil {
		return nil, status.Error(codes.InvalidArgument, "vproc: "+err.Error())
	}
	l := a.s.load
	if l.cfg.Levels == nil {
		return nil, status.Error(codes.FailedPrecondition, "vproc: this vprocd has no runtime list of programs placed by load")
	}
	l.mu.Lock()
	inConfig, inRuntime := l.config[name], l.runtime[name]
	l.mu.Unlock()
	var err error
	switch {
	case req.GetRemove() && !inRuntime && inConfig:
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: %q is in openssi.yaml (vprocd.loadlevel): remove it there", name)
	case req.GetRemove() && !inRuntime:
		return nil, status.Errorf(codes.NotFound, "vproc: %q is not placed by load", name)
	case req.GetRemove():
		err = l.cfg.Levels.Remove(ctx, name)
	default:
		err = l.cfg.Levels.Add(ctx, name)
	}
	if err != nil {
		return nil, status.Error(codes.Unavailable, "vproc: "+err.Error())
	}
	l.mu.Lock()
	if req.GetRemove() {
		delete(l.runtime, name)
	} else {
		l.runtime[name] = true
	}
	l.mu.Unlock()
	return &vprocv1.SetLoadLevelReply{}, nil
}
