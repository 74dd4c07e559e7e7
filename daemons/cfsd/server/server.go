// Package server is cfsd's shell: it serves the exports of this node
// (package export) to the other nodes' cfsd over mutual TLS, mounts every
// export at its cluster path (package cfsmount) once its server answers,
// and closes a client node's open files when that node goes DOWN.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/openssi/openssi/daemons/cfsd/cfsdspec"
	"github.com/openssi/openssi/daemons/cfsd/cfsmount"
	"github.com/openssi/openssi/daemons/cfsd/export"
	"github.com/openssi/openssi/daemons/cfsd/handle"
	"github.com/openssi/openssi/internal/rpc"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// ServiceName is cfsd's Connect service.
var ServiceName = rpc.ServiceName(cfsdspec.Name)

// MaxMessage bounds a peer message: a read or write of 1 MiB and its
// envelope, or a page of a directory listing (256 KiB of names).
const MaxMessage = 2 << 20

// MaxStreams bounds the requests one client node has in flight at once
// on the server; more wait for one to end.
const MaxStreams = 256

// Config says what to serve and mount, and how to reach peers.
type Config struct {
	// Self is this node's number.
	Self uint32
	// Exports are cfsd.exports.
	Exports []cfsdspec.Export
	// Timeout bounds each operation of a mount (cfsd.timeout).
	Timeout time.Duration
	// KeyDir keeps the key of each export this node serves
	// (<name>.key, root's, 0600), so its handles outlive a restart.
	KeyDir string
	// Source is this node's TLS identity.
	Source rpc.Source
	// Lookup is the address of node n's cfsd; NodeName the Consul node
	// holding number n.
	Lookup   func(ctx context.Context, n uint32) (string, error)
	NodeName func(ctx context.Context, n uint32) (string, error)
	// DialOptions are added to every peer dial (tests).
	DialOptions []rpc.DialOption
	// OnStatus is told the status line whenever it changes; may be nil.
	OnStatus func(line string)
	Log      logrus.FieldLogger
}

// Server is one node's cfsd.
type Server struct {
	cfg Config
	svc *export.Service
	log logrus.FieldLogger

	mu     sync.Mutex
	mounts map[string]*fuse.Server // by export name
	why    map[string]string       // why an export is not mounted yet
	conns  map[uint32]*grpc.ClientConn
	closed bool
	status string
}

// New opens the exports this node serves; an export whose directory
// is missing or cannot be served fails it with one line naming it.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Log, mounts: map[string]*fuse.Server{}, why: map[string]string{}, conns: map[uint32]*grpc.ClientConn{}}
	s.svc = export.NewService(s.clientOf)
	for _, e := range cfg.Exports {
		if uint32(e.Server) != cfg.Self {
			continue
		}
		if err := s.serve(e); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) serve(e cfsdspec.Export) error {
	st, err := os.Stat(e.Path)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("cfsd: export %s: %s is not a directory on this node (node %d serves it): create it or fix cfsd.exports", e.Name, e.Path, s.cfg.Self)
	}
	key, err := loadKey(s.cfg.KeyDir, e.Name)
	if err != nil {
		return err
	}
	x, err := export.Open(e.Name, e.Path, key, export.DefaultLimits)
	if err != nil {
		return fmt.Errorf("cfsd: %w", err)
	}
	s.svc.Add(x)
	s.log.WithField("export", e.Name).Infof("serving %s", e.Path)
	return nil
}

// loadKey reads the export's key, making it the first time.
func loadKey(dir, name string) ([]byte, error) {
	p := filepath.Join(dir, name+".key")
	b, err := os.ReadFile(p)
	if err == nil {
		if len(b) != handle.KeySize {
			return nil, fmt.Errorf("cfsd: export %s: %s holds %d bytes, not a key of %d: remove it (clients then remount)", name, p, len(b), handle.KeySize)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cfsd: export %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cfsd: export %s: %w", name, err)
	}
	key := make([]byte, handle.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cfsd: export %s: %w", name, err)
	}
	_, werr := f.Write(key)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(p)
		return nil, fmt.Errorf("cfsd: export %s: write %s: %w", name, p, err)
	}
	return key, nil
}

// Register adds the file protocol to the peer server.
func (s *Server) Register(g *grpc.Server) { pb.RegisterCfsPeerServer(g, s.svc) }

// ServerOptions are the peer server's options: messages up to MaxMessage.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage), grpc.MaxConcurrentStreams(MaxStreams)}
}

// clientOf is the node a request came from: the node its certificate
// names, for a peer cfsd only.
func (s *Server) clientOf(ctx context.Context) (string, error) {
	id, ok := rpc.PeerIdentity(ctx)
	if !ok || id.Service != ServiceName || id.Node == "" {
		return "", fmt.Errorf("only a peer %s may call this (caller %q)", ServiceName, id)
	}
	return id.Node, nil
}

// NodeDown closes the files the node named name had open here.
func (s *Server) NodeDown(name string) {
	if n := s.svc.CloseClient(name); n > 0 {
		s.log.Infof("closed %d files %s had open: it is down", n, name)
	}
}

// Run mounts every export, trying again each second those whose server
// does not answer yet, until ctx ends; beat is called each round.
func (s *Server) Run(ctx context.Context, beat func()) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		beat()
		s.mountAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) mountAll(ctx context.Context) {
	for _, e := range s.cfg.Exports {
		s.mu.Lock()
		done := s.mounts[e.Name] != nil || s.closed
		s.mu.Unlock()
		if done {
			continue
		}
		err := s.mount(ctx, e)
		s.mu.Lock()
		if err != nil {
			if s.why[e.Name] != err.Error() {
				s.log.WithField("export", e.Name).Warnf("not mounted yet: %v", err)
			}
			s.why[e.Name] = err.Error()
		} else {
			delete(s.why, e.Name)
		}
		s.mu.Unlock()
	}
	if line := s.Status(); s.cfg.OnStatus != nil && line != s.status {
		s.status = line
		s.cfg.OnStatus(line)
	}
}

// mount mounts one export at its cluster path.
func (s *Server) mount(ctx context.Context, e cfsdspec.Export) error {
	conn, err := s.conn(ctx, uint32(e.Server))
	if err != nil {
		return err
	}
	if err := prepare(e.Mount); err != nil {
		return err
	}
	srv, err := cfsmount.Mount(e.Mount, cfsmount.Options{
		Export: e.Name, Client: pb.NewCfsPeerClient(conn), Timeout: s.cfg.Timeout,
		OnError: s.quietly(e.Name),
	})
	if err != nil {
		// A mount(2) that succeeded before the rest failed leaves a
		// mount nobody serves.
		_ = cfsmount.Detach(e.Mount)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		unmount(e.Mount, srv)
		return errors.New("cfsd is stopping")
	}
	s.mounts[e.Name] = srv
	s.log.WithField("export", e.Name).Infof("mounted on %s from node %d", e.Mount, e.Server)
	return nil
}

// quietly logs a mount's failed requests, each message at most every
// 10 s: a server that is down fails every request of every caller.
func (s *Server) quietly(export string) func(error) {
	var mu sync.Mutex
	last := map[string]time.Time{}
	return func(err error) {
		msg := err.Error()
		now := time.Now()
		mu.Lock()
		quiet := now.Sub(last[msg]) < 10*time.Second
		if !quiet {
			if len(last) > 64 {
				clear(last)
			}
			last[msg] = now
		}
		mu.Unlock()
		if !quiet {
			s.log.WithField("export", export).Warn(err)
		}
	}
}

// prepare makes the mount point, and detaches the cfs mounts a cfsd
// that died (or a mount that failed half-way) left there.
func prepare(dir string) error {
	if err := cfsmount.Detach(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	return nil
}

// conn is the connection to node n's cfsd, dialled once.
func (s *Server) conn(ctx context.Context, n uint32) (*grpc.ClientConn, error) {
	s.mu.Lock()
	c := s.conns[n]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	name, err := s.cfg.NodeName(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("who holds node %d: %w", n, err)
	}
	addr, err := s.cfg.Lookup(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("address of node %d's cfsd: %w", n, err)
	}
	opts := append([]rpc.DialOption{rpc.WithGRPCOptions(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)))}, s.cfg.DialOptions...)
	c, err = rpc.Dial(ctx, s.cfg.Source, addr, rpc.NodeIdentity(ServiceName, name), opts...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.conns[n]; old != nil {
		c.Close()
		return old, nil
	}
	s.conns[n] = c
	return c, nil
}

// unmount unmounts a mount, detaching it when files are still open on
// it (their users get errors from then on, as after umount -l).
func unmount(dir string, srv *fuse.Server) {
	if err := srv.Unmount(); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return
	}
	srv.Wait()
}

// Status is the one line `ssi status` shows.
func (s *Server) Status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mounted, waiting []string
	for _, e := range s.cfg.Exports {
		if s.mounts[e.Name] != nil {
			mounted = append(mounted, e.Name+" on "+e.Mount)
		} else {
			waiting = append(waiting, e.Name)
		}
	}
	sort.Strings(waiting)
	served := 0
	for _, e := range s.cfg.Exports {
		if uint32(e.Server) == s.cfg.Self {
			served++
		}
	}
	line := fmt.Sprintf("node %d: serving %d exports, mounted %d of %d", s.cfg.Self, served, len(mounted), len(s.cfg.Exports))
	if len(waiting) > 0 {
		line += " (waiting for the server of " + strings.Join(waiting, ", ") + ")"
	}
	return line
}

// Close unmounts every mount, closes the connections and the exports.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	mounts := s.mounts
	s.mounts = map[string]*fuse.Server{}
	conns := s.conns
	s.conns = map[uint32]*grpc.ClientConn{}
	s.mu.Unlock()
	for _, e := range s.cfg.Exports {
		if srv := mounts[e.Name]; srv != nil {
			unmount(e.Mount, srv)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	for _, e := range s.cfg.Exports {
		if x := s.svc.Remove(e.Name); x != nil {
			x.Close()
		}
	}
}
