package server

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/rpc"
	clmspeerv1 "github.com/openssi/openssi/proto/clmspeer/v1"
)

// Peer is the inter-node service clmsd daemons call on each other.
type Peer struct {
	clmspeerv1.UnimplementedPeerServer
	s   *Server
	now func() time.Time
}

// NewPeer returns the peer service of s.
func NewPeer(s *Server) *Peer { return &Peer{s: s, now: time.Now} }

// Register adds the service to a gRPC server.
func (p *Peer) Register(g *grpc.Server) { clmspeerv1.RegisterPeerServer(g, p) }

// Clock answers a clock probe with the arrival and departure times on this
// node's clock.
func (p *Peer) Clock(_ context.Context, r *clmspeerv1.ClockRequest) (*clmspeerv1.ClockReply, error) {
	t1 := p.now()
	return &clmspeerv1.ClockReply{T0: r.GetT0(), T1: t1.UnixNano(), T2: p.now().UnixNano(), Node: uint32(p.s.number)}, nil
}

// SkewProber measures the clock offset to every other UP node, every
// interval, over the inter-node RPC.
type SkewProber struct {
	s        *Server
	src      rpc.Source
	interval time.Duration

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by wanted identity and address
}

// NewSkewProber returns a prober using src for mutual TLS.
func NewSkewProber(s *Server, src rpc.Source, interval time.Duration) *SkewProber {
	return &SkewProber{s: s, src: src, interval: interval, conns: map[string]*grpc.ClientConn{}}
}

// Run probes until ctx ends.
func (p *SkewProber) Run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	defer p.closeAll()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *SkewProber) round(ctx context.Context) {
	v, _ := p.s.snapshotView()
	// Only instances on each number's claim holder: any node may register
	// one claiming another's number.
	peers, err := rpc.PeersOn(ctx, p.s.consul, "clmsd", p.s.claimName)
	if err != nil {
		p.s.log.WithError(err).Debug("skew: list peers")
		return
	}
	var wg sync.WaitGroup
	for _, m := range v.Members {
		addr, ok := peers[m.Number]
		if m.Number == p.s.number || m.State != membership.Up || !ok {
			continue
		}
		wg.Add(1)
		go func(n int, addr string) {
			defer wg.Done()
			p.probe(ctx, n, addr)
		}(m.Number, addr)
	}
	wg.Wait()
}

// probe measures the clock of node n's clmsd at addr. It talks only to
// the clmsd whose certificate names the node holding n's claim: what it
// records for n is n's.
func (p *SkewProber) probe(ctx context.Context, n int, addr string) {
	name := p.s.claimName(n)
	if name == "" {
		p.s.log.WithField("node", n).Debug("skew: no claim of the node number known")
		return
	}
	conn, err := p.conn(ctx, rpc.NodeIdentity(rpc.ServiceName("clmsd"), name), addr)
	if err != nil {
		p.s.log.WithError(err).WithField("node", n).Debug("skew: dial")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	t0 := time.Now()
	r, err := clmspeerv1.NewPeerClient(conn).Clock(ctx, &clmspeerv1.ClockRequest{T0: t0.UnixNano()})
	t3 := time.Now()
	if err != nil {
		p.s.log.WithError(err).WithField("node", n).Debug("skew: probe")
		return
	}
	if int(r.GetNode()) != n {
		p.s.log.WithFields(logrus.Fields{"node": n, "answered": r.GetNode(), "address": addr}).Warn("skew: a different node answered; the service catalog is stale")
		return
	}
	sample := membership.ClockSample{T0: t0, T1: time.Unix(0, r.GetT1()), T2: time.Unix(0, r.GetT2()), T3: t3}
	p.s.recordSkew(n, sample)
}

// conn returns the connection to addr, whose server must hold identity
// want (clmsd on one node).
func (p *SkewProber) conn(ctx context.Context, want, addr string) (*grpc.ClientConn, error) {
	key := want + "@" + addr
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[key]; ok {
		return c, nil
	}
	c, err := rpc.Dial(ctx, p.src, addr, want)
	if err != nil {
		return nil, err
	}
	p.conns[key] = c
	return c, nil
}

func (p *SkewProber) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
}

// recordSkew adds a sample and logs when a peer crosses the threshold.
func (s *Server) recordSkew(n int, sample membership.ClockSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.skew.Add(n, sample) {
		return
	}
	sk, _ := s.skew.Get(n)
	f := logrus.Fields{"node": n, "offset": sk.Offset.String(), "rtt": sk.Delay.String(), "threshold": s.cfg.SkewThreshold.String()}
	switch {
	case sk.Warn && !s.warned[n]:
		s.warned[n] = true
		s.log.WithFields(f).Warn("clock skew above threshold: check NTP on both nodes")
	case !sk.Warn && s.warned[n]:
		delete(s.warned, n)
		s.log.WithFields(f).Info("clock skew back under threshold")
	}
}
