// Package server is openssi-keepalived's shell: it reads the
// declarations (files and Consul KV), runs one election per application
// this node may run (initfailover's Elector on the application's own EX
// lock in the root-only lockspace openssi.keepalived), runs the
// application as a transient systemd unit while this node holds its lock,
// restarts it in place, gives it up to the next node by its placement
// rule (package placement), records where each runs in Consul KV and
// serves `ssi keepalive` on the local socket.
package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/client/dlm"
	ifserver "github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/keepalived/decl"
	"github.com/openssi/openssi/daemons/keepalived/keepalivedspec"
	"github.com/openssi/openssi/daemons/keepalived/placement"
	"github.com/openssi/openssi/internal/consul"
)

// Config configures a Manager.
type Config struct {
	// Self is this node's number.
	Self uint32
	// Dir holds the declaration files (keepalived.dir).
	Dir string
	// StopTimeout: keepalived.stop_timeout.
	StopTimeout time.Duration
	// Rescan: how often Dir is read again. Default 5s.
	Rescan time.Duration
	// Poll: how often a running application's unit is looked at (an exit
	// is seen within it). Default 100ms.
	Poll time.Duration
	// Retry: how long the elections wait before asking dlmd again.
	// Default 1s.
	Retry time.Duration
	// StartGrace: how long a node that is not an application's
	// preferred node waits before it first queues for its lock, so that
	// the preferred node, booting at the same time, gets it first.
	// Default 2s.
	StartGrace time.Duration
	// Units runs the applications (nil: this node runs none).
	Units Units
	KV    *consul.KV
	// Session opens a lock session with the node's dlmd.
	Session func(ctx context.Context) (*dlm.Client, error)
	// BindsTo is the daemon's unit when it runs under systemd ("" none):
	// the applications' units are bound to it.
	BindsTo string
	Log     logrus.FieldLogger
}

// RunRecord is where an application runs, in Consul KV
// (openssi/keepalive/run/NAME), written by the node running it.
type RunRecord struct {
	Node     uint32    `json:"node"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Restarts uint32    `json:"restarts"`
	Message  string    `json:"message,omitempty"`
	// GaveUp are the nodes that gave it up after repeated failures: the
	// placement rule passes them by until it has run for its window
	// somewhere, or a move.
	GaveUp []uint32 `json:"gave_up,omitempty"`
}

func (r *RunRecord) addGaveUp(n uint32) {
	if !slices.Contains(r.GaveUp, n) {
		r.GaveUp = append(r.GaveUp, n)
	}
}

// MoveRequest asks the node running an application to hand it over
// (openssi/keepalive/move/NAME).
type MoveRequest struct {
	To uint32    `json:"to"`
	At time.Time `json:"at"`
}

// Manager runs this node's part of every application.
type Manager struct {
	cfg Config
	log logrus.FieldLogger

	mu       sync.Mutex
	up       map[uint32]bool
	known    map[uint32]bool
	files    map[string]decl.Decl
	fileErrs map[string]string // path -> the error reported
	kvApps   map[string]decl.Decl
	runs     map[string]RunRecord
	moves    map[string]MoveRequest
	apps     map[string]*running
	skipped  map[string]string // name -> why this node does not run it (logged once)
	dirty    map[string]bool   // run records to write
	ctx      context.Context
	wg       sync.WaitGroup

	wake  chan struct{}
	write chan struct{}
	// flushMu serializes the writes of run records.
	flushMu sync.Mutex
}

// running is an application whose election runs on this node.
type running struct {
	d      decl.Decl
	app    *app
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Manager; Run runs it.
func New(cfg Config) *Manager {
	if cfg.Rescan == 0 {
		cfg.Rescan = 5 * time.Second
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	if cfg.StartGrace == 0 {
		cfg.StartGrace = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Manager{cfg: cfg, log: cfg.Log, up: map[uint32]bool{}, known: map[uint32]bool{}, files: map[string]decl.Decl{},
		fileErrs: map[string]string{}, kvApps: map[string]decl.Decl{}, runs: map[string]RunRecord{}, moves: map[string]MoveRequest{},
		apps: map[string]*running{}, skipped: map[string]string{}, dirty: map[string]bool{},
		wake: make(chan struct{}, 1), write: make(chan struct{}, 1)}
}

// Membership records whether node is an UP member.
func (m *Manager) Membership(node uint32, up bool) {
	m.mu.Lock()
	m.known[node] = true
	if up {
		m.up[node] = true
	} else {
		delete(m.up, node)
	}
	apps := m.runningLocked()
	m.mu.Unlock()
	for _, r := range apps {
		r.app.el.SetUp(node, up)
	}
}

func (m *Manager) runningLocked() []*running {
	out := make([]*running, 0, len(m.apps))
	for _, r := range m.apps {
		out = append(out, r)
	}
	return out
}

// Run runs the applications until ctx ends, then stops those running
// here and releases their locks cleanly, so their next nodes start them
// at once.
func (m *Manager) Run(ctx context.Context, beat func()) error {
	work, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.mu.Lock()
	m.ctx = work
	m.mu.Unlock()
	m.spawn(work, func(ctx context.Context) { m.watchKV(ctx, keepalivedspec.KVApps, m.setKVApps) })
	m.spawn(work, func(ctx context.Context) { m.watchKV(ctx, keepalivedspec.KVRun, m.setRuns) })
	m.spawn(work, func(ctx context.Context) { m.watchKV(ctx, keepalivedspec.KVMoves, m.setMoves) })
	m.spawn(work, m.writer)
	m.scan()
	t := time.NewTicker(m.cfg.Rescan)
	defer t.Stop()
	beatT := time.NewTicker(time.Second)
	defer beatT.Stop()
	for {
		if beat != nil {
			beat()
		}
		m.reconcile()
		select {
		case <-ctx.Done():
			m.log.Info("stopping: the applications running here are stopped and handed over")
			m.mu.Lock()
			apps := m.runningLocked()
			m.apps = map[string]*running{}
			m.mu.Unlock()
			for _, r := range apps {
				r.cancel()
			}
			for _, r := range apps {
				<-r.done
			}
			m.flush()
			cancel()
			m.wg.Wait()
			return nil
		case <-t.C:
			m.scan()
		case <-m.wake:
		case <-beatT.C:
		}
	}
}

func (m *Manager) spawn(ctx context.Context, f func(ctx context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f(ctx)
	}()
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// scan reads the declaration files; a malformed one is reported once
// (path, line, field) and the others, and its last good declaration,
// keep running.
func (m *Manager) scan() {
	ents, err := os.ReadDir(m.cfg.Dir)
	files := map[string]decl.Decl{}
	errs := map[string]string{}
	if err != nil && !os.IsNotExist(err) {
		errs[m.cfg.Dir] = fmt.Sprintf("keepalive: %s: %v", m.cfg.Dir, err)
	}
	m.mu.Lock()
	old := m.files
	m.mu.Unlock()
	for _, e := range ents {
		name, ok := decl.NameOf(e.Name())
		if !ok || e.IsDir() || name == "" || name[0] == '.' {
			continue
		}
		path := filepath.Join(m.cfg.Dir, e.Name())
		data, err := readLimited(path)
		var d decl.Decl
		if err == nil {
			d, err = decl.ParseFile(path, data)
		}
		if err != nil {
			errs[path] = err.Error()
			if prev, ok := old[name]; ok {
				files[name] = prev // keep the last good one
			}
			continue
		}
		files[name] = d
	}
	m.mu.Lock()
	for p, e := range errs {
		if m.fileErrs[p] != e {
			m.log.Error(e)
		}
	}
	m.files, m.fileErrs = files, errs
	m.mu.Unlock()
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, decl.MaxFileSize+1)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// watchKV follows a prefix of Consul KV with blocking queries; while
// Consul cannot be reached the last answer stands (nothing is stopped
// for it).
func (m *Manager) watchKV(ctx context.Context, prefix string, apply func([]consul.Entry)) {
	var index uint64
	failing := false
	for ctx.Err() == nil {
		ents, next, err := m.cfg.KV.List(ctx, prefix, consul.Wait{Index: index, Time: time.Minute})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				m.log.WithError(err).Warn("reading Consul KV: keeping what was read last")
				failing = true
			}
			sleep(ctx, time.Second)
			continue
		}
		if failing {
			m.log.Info("Consul KV answers again")
			failing = false
		}
		if next < index {
			next = 0
		}
		index = next
		apply(ents)
		m.poke()
	}
}

func keyName(prefix, key string) string { return key[len(prefix):] }

func (m *Manager) setKVApps(ents []consul.Entry) {
	apps := map[string]decl.Decl{}
	for _, e := range ents {
		name := keyName(keepalivedspec.KVApps, e.Key)
		var d decl.Decl
		err := e.Decode(&d)
		if err == nil {
			d.Name, d.Source = name, ""
			d.Defaults()
			err = d.Validate()
		}
		if err != nil {
			m.log.WithError(err).Errorf("keepalive: consul key %s: ignored", consul.Prefix+e.Key)
			continue
		}
		apps[name] = d
	}
	m.mu.Lock()
	m.kvApps = apps
	m.mu.Unlock()
}

func (m *Manager) setRuns(ents []consul.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range ents {
		name := keyName(keepalivedspec.KVRun, e.Key)
		seen[name] = true
		if r, ok := m.apps[name]; ok && m.holdsLocked(r) {
			continue // this node writes it: its own copy is the newest
		}
		var rec RunRecord
		if e.Decode(&rec) == nil {
			m.runs[name] = rec
		}
	}
	for name := range m.runs {
		if r, ok := m.apps[name]; !seen[name] && !(ok && m.holdsLocked(r)) {
			delete(m.runs, name)
		}
	}
}

func (m *Manager) holdsLocked(r *running) bool {
	_, _, is := r.app.el.Status()
	return is
}

func (m *Manager) setMoves(ents []consul.Entry) {
	moves := map[string]MoveRequest{}
	for _, e := range ents {
		var mv MoveRequest
		if e.Decode(&mv) == nil {
			moves[keyName(keepalivedspec.KVMoves, e.Key)] = mv
		}
	}
	m.mu.Lock()
	m.moves = moves
	m.mu.Unlock()
}

// declsLocked is every declared application: Consul's registrations,
// with this node's files over them.
func (m *Manager) declsLocked() map[string]decl.Decl {
	all := map[string]decl.Decl{}
	for n, d := range m.kvApps {
		all[n] = d
	}
	for n, d := range m.files {
		all[n] = d
	}
	return all
}

// candidate says whether this node may run d, and if not why; listed
// says whether d names this node (or any node).
func (m *Manager) candidate(d decl.Decl) (listed bool, why string) {
	if d.Primary != 0 || len(d.Backups) > 0 {
		if d.Primary != m.cfg.Self && !slices.Contains(d.Backups, m.cfg.Self) {
			return false, fmt.Sprintf("node %d is neither its primary nor a backup", m.cfg.Self)
		}
	}
	if _, err := lookupUser(d.User); err != nil {
		return true, err.Error()
	}
	if _, err := resolve(d.Command); err != nil {
		return true, err.Error()
	}
	return true, ""
}

// putUnfit records in Consul KV why this node cannot run name ("":
// it can again).
func (m *Manager) putUnfit(name, why string) {
	key := fmt.Sprintf("%s%s/%d", keepalivedspec.KVUnfit, name, m.cfg.Self)
	m.spawn(m.ctx, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if why == "" {
			err = m.cfg.KV.Delete(ctx, key)
		} else {
			err = m.cfg.KV.Put(ctx, key, Unfit{Why: why})
		}
		if err != nil {
			m.log.WithError(err).Debug("recording why this node cannot run an application")
		}
	})
}

// Unfit says why a node cannot run an application
// (openssi/keepalive/unfit/NAME/NODE).
type Unfit struct {
	Why string `json:"why"`
}

// reconcile starts the elections of the applications this node may run
// and stops the others', and carries out the moves asked of this node.
func (m *Manager) reconcile() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return
	}
	want := m.declsLocked()
	if m.cfg.Units == nil {
		// No systemd here: serve ssi keepalive, run nothing.
		want = map[string]decl.Decl{}
	}
	for name, d := range want {
		listed, why := m.candidate(d)
		if why != "" {
			if m.skipped[name] != why {
				m.log.WithField("app", name).Warnf("keepalive: %s: not run on node %d: %s", name, m.cfg.Self, why)
				m.skipped[name] = why
				if listed {
					// Say so where ssi keepalive status looks.
					m.putUnfit(name, why)
				}
			}
			delete(want, name)
			continue
		}
		if _, ok := m.skipped[name]; ok {
			delete(m.skipped, name)
			m.putUnfit(name, "")
		}
	}
	for name := range m.skipped {
		if _, ok := want[name]; !ok {
			if _, declared := m.declsLocked()[name]; !declared {
				delete(m.skipped, name)
			}
		}
	}
	for name, r := range m.apps {
		if d, ok := want[name]; ok && sameDecl(d, r.d) {
			continue
		}
		m.log.WithField("app", name).Info("declaration removed or changed: stopping it here")
		r.cancel()
		delete(m.apps, name)
		if d, ok := want[name]; ok {
			m.apps[name] = m.startLocked(d, r.done)
		}
	}
	for name, d := range want {
		if _, ok := m.apps[name]; !ok {
			m.apps[name] = m.startLocked(d, nil)
		}
	}
	for name, mv := range m.moves {
		r, ok := m.apps[name]
		if !ok || !m.holdsLocked(r) {
			continue
		}
		delete(m.moves, name)
		rec := m.runs[name]
		rec.GaveUp = nil
		m.runs[name] = rec
		m.dirty[name] = true
		m.spawn(m.ctx, func(ctx context.Context) {
			if err := m.cfg.KV.Delete(ctx, keepalivedspec.KVMoves+name); err != nil {
				m.log.WithError(err).Warn("clearing a move request")
			}
			if mv.To == m.cfg.Self {
				return
			}
			// The target reads the record when it starts: the nodes
			// that gave it up are forgotten there first.
			m.flushNow(ctx)
			m.log.WithField("app", name).Infof("moving it to node %d (ssi keepalive move)", mv.To)
			if err := r.app.el.Move(ctx, mv.To); err != nil {
				m.log.WithField("app", name).WithError(err).Warnf("moving it to node %d", mv.To)
			}
		})
	}
	select {
	case m.write <- struct{}{}:
	default:
	}
}

func sameDecl(a, b decl.Decl) bool { return reflect.DeepEqual(a, b) }

// startLocked starts the election of d once after (the previous election
// of the same name) has ended.
func (m *Manager) startLocked(d decl.Decl, after <-chan struct{}) *running {
	ctx, cancel := context.WithCancel(m.ctx)
	r := &running{d: d, cancel: cancel, done: make(chan struct{})}
	a := newApp(m, d, ctx)
	r.app = a
	a.el = ifserver.NewElector(ifserver.ElectorConfig{
		Self: m.cfg.Self, Target: a.unit, StopTimeout: m.cfg.StopTimeout, Systemd: a, Session: m.cfg.Session,
		Lockspace: keepalivedspec.Lockspace, Resource: d.Name, Prefer: m.prefer(d), Retry: m.cfg.Retry,
		Poll: m.cfg.Poll, Log: a.log, Role: "application " + d.Name,
	})
	up := map[uint32]bool{}
	for n, u := range m.up {
		a.el.SetUp(n, u)
		up[n] = u
	}
	rec := m.runs[d.Name]
	unfit := map[uint32]bool{}
	for _, n := range rec.GaveUp {
		unfit[n] = true
	}
	preferred := placement.Choose(d.Rule(), placement.Nodes(d.Primary, d.Backups, up), up, rec.Node, unfit) == m.cfg.Self
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		if after != nil {
			<-after
		}
		if !preferred {
			sleep(ctx, m.cfg.StartGrace)
		}
		if err := a.el.Run(ctx, nil); err != nil {
			a.log.WithError(err).Warn("election ended")
		}
		a.wait()
	}()
	return r
}

// prefer is d's placement rule for its election: who takes its lock
// when it is granted without a hand-over.
func (m *Manager) prefer(d decl.Decl) func(up map[uint32]bool) uint32 {
	return func(up map[uint32]bool) uint32 {
		m.mu.Lock()
		rec := m.runs[d.Name]
		m.mu.Unlock()
		unfit := map[uint32]bool{}
		for _, n := range rec.GaveUp {
			unfit[n] = true
		}
		return placement.Choose(d.Rule(), placement.Nodes(d.Primary, d.Backups, up), up, rec.Node, unfit)
	}
}

// choose is the node d goes to when self gives it up.
func (m *Manager) choose(d decl.Decl, self uint32, gaveUp []uint32) uint32 {
	m.mu.Lock()
	up := map[uint32]bool{}
	for n, u := range m.up {
		up[n] = u
	}
	m.mu.Unlock()
	unfit := map[uint32]bool{self: true}
	for _, n := range gaveUp {
		unfit[n] = true
	}
	return placement.Choose(d.Rule(), placement.Nodes(d.Primary, d.Backups, up), up, self, unfit)
}

// setRun changes the run record of name (written to Consul KV shortly)
// and returns the nodes that gave it up.
func (m *Manager) setRun(name string, f func(*RunRecord)) []uint32 {
	m.mu.Lock()
	rec := m.runs[name]
	rec.GaveUp = slices.Clone(rec.GaveUp)
	f(&rec)
	m.runs[name] = rec
	m.dirty[name] = true
	m.mu.Unlock()
	select {
	case m.write <- struct{}{}:
	default:
	}
	return rec.GaveUp
}

// writer writes the run records this node changed; a write that fails
// (Consul unreachable) is tried again.
func (m *Manager) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.write:
		}
		if !m.flushCtx(ctx) {
			sleep(ctx, time.Second)
			select {
			case m.write <- struct{}{}:
			default:
			}
		}
	}
}

// flushNow writes the changed run records at once (within 2s).
func (m *Manager) flushNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if !m.flushCtx(ctx) {
		m.log.Warn("Consul KV: a run record is not written yet; retrying")
	}
}

// freshRun reads name's run record from Consul KV (consistent, within
// 2s) into this node's copy and returns the nodes that gave the
// application up; on failure this node's copy stands.
func (m *Manager) freshRun(ctx context.Context, name string) []uint32 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var kv RunRecord
	_, found, err := m.cfg.KV.GetConsistent(ctx, keepalivedspec.KVRun+name, &kv)
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.runs[name]
	if err == nil && found {
		// The last holder wrote it before it let the lock go: it is
		// newer than this node's copy, which the watch may not have
		// brought up to date yet.
		rec = kv
		m.runs[name] = rec
	}
	return slices.Clone(rec.GaveUp)
}

func (m *Manager) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	m.flushCtx(ctx)
}

func (m *Manager) flushCtx(ctx context.Context) bool {
	// One flush at a time: a flush that took its copy earlier must not
	// land after a newer one.
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.mu.Lock()
	todo := map[string]RunRecord{}
	for name := range m.dirty {
		todo[name] = m.runs[name]
	}
	m.dirty = map[string]bool{}
	m.mu.Unlock()
	ok := true
	for name, rec := range todo {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.cfg.KV.Put(wctx, keepalivedspec.KVRun+name, rec)
		cancel()
		if err != nil {
			ok = false
			m.mu.Lock()
			m.dirty[name] = true
			m.mu.Unlock()
		}
	}
	return ok
}

// Status is an application as List reports it.
type Status struct {
	Decl   decl.Decl
	Run    RunRecord
	Source string
}

// List returns the applications known here (name "" all), sorted, with
// where each runs, and the declaration files this node could not read.
func (m *Manager) List(name string) ([]Status, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Status
	for n, d := range m.declsLocked() {
		if name != "" && n != name {
			continue
		}
		src := d.Source
		if src == "" {
			src = "consul"
		}
		out = append(out, Status{Decl: d, Run: m.runs[n], Source: src})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Decl.Name < out[j].Decl.Name })
	var errs []string
	for _, e := range m.fileErrs {
		errs = append(errs, e)
	}
	sort.Strings(errs)
	return out, errs
}

// Up reports whether node is an UP member; Known whether it ever was.
func (m *Manager) Up(node uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.up[node]
}

// Known reports whether node is a member this node has seen.
func (m *Manager) Known(node uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known[node]
}

// File returns the declaration file of name on this node, if any.
func (m *Manager) File(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[name]
	return d.Source, ok
}
