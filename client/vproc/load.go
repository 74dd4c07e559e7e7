package vproc

import (
	"context"
	"time"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// Auto, as Exec's node, places the program on the least-loaded node (per
// CPU, with a stability margin), as the local vprocd chooses from the
// load it has heard: `ssi exec --auto`.
const Auto = -1

// Load is one node's load, as a node believes it.
type Load struct {
	Node int `json:"node"`
	// Self: the node's own measurement (not heard from a peer).
	Self bool `json:"self"`
	// RunQueue is the tasks runnable at the measurement; Load1 the
	// 1-minute load average; CPUs those online; FreeMem the memory
	// available, in bytes.
	RunQueue int     `json:"run_queue"`
	Load1    float64 `json:"load1"`
	CPUs     int     `json:"cpus"`
	FreeMem  uint64  `json:"free_mem"`
	// RunQueueAvg is the run queue unrounded, where the node measured it
	// as its tasks' average since its previous measurement (0 otherwise).
	RunQueueAvg float64 `json:"run_queue_avg"`
	// Measured is when the node measured it (its clock); Heard when the
	// asked node measured or heard it (the asked node's clock).
	Measured time.Time `json:"measured"`
	Heard    time.Time `json:"heard"`
	// InFlight counts the asked node's placements there not yet seen in
	// a vector; Score is (Tasks()+InFlight)/CPUs, what placement
	// compares.
	InFlight int     `json:"in_flight"`
	Score    float64 `json:"score"`
}

// Tasks is the run queue placement and the load leveler compare:
// RunQueueAvg where the node measured it, else RunQueue.
func (l Load) Tasks() float64 {
	if l.RunQueueAvg > 0 {
		return l.RunQueueAvg
	}
	return float64(l.RunQueue)
}

// LoadView is what one node believes of the cluster's load: its own
// measurement and the freshest vectors it heard (at most 8 peers, each at
// most 8s old).
type LoadView struct {
	// Node is the asked node; Now its clock when it replied.
	Node  int       `json:"node"`
	Now   time.Time `json:"now"`
	Loads []Load    `json:"loads"`
}

func (c *Client) load() vprocv1.VprocLoadClient { return vprocv1.NewVprocLoadClient(c.conn) }

// Loads returns what the local vprocd believes of the cluster's load.
func (c *Client) Loads(ctx context.Context) (LoadView, error) {
	r, err := c.load().Loads(ctx, &vprocv1.LoadsRequest{})
	if err != nil {
		return LoadView{}, c.wrap(err)
	}
	v := LoadView{Node: int(r.Node), Now: time.Unix(0, r.NowUnixNano)}
	for _, e := range r.Entries {
		v.Loads = append(v.Loads, loadOf(e))
	}
	return v, nil
}

func loadOf(e *vprocv1.LoadEntry) Load {
	x := e.GetVector()
	return Load{Node: int(x.GetNode()), Self: e.Self, RunQueue: int(x.GetRunQueue()), RunQueueAvg: x.GetRunQueueAvg(), Load1: x.GetLoad1(),
		CPUs: int(x.GetCpus()), FreeMem: x.GetFreeMem(), Measured: time.Unix(0, x.GetAtUnixNano()),
		Heard: time.Unix(0, e.HeardUnixNano), InFlight: int(e.InFlight), Score: e.Score}
}

// Place asks the local vprocd for the node a new program should run on
// and counts one there; Exec with Auto does it. The error wraps ErrNoNode
// when vprocd has no load information yet.
func (c *Client) Place(ctx context.Context) (int, error) {
	r, err := c.load().Place(ctx, &vprocv1.PlaceRequest{})
	if err != nil {
		return 0, c.wrap(err)
	}
	return int(r.Node), nil
}

// LoadLevels returns the programs that Exec without a node (node 0)
// places by load: those of openssi.yaml (vprocd.loadlevel) and those
// added at run time.
func (c *Client) LoadLevels(ctx context.Context) (config, runtime []string, err error) {
	r, err := c.load().LoadLevels(ctx, &vprocv1.LoadLevelsRequest{})
	if err != nil {
		return nil, nil, c.wrap(err)
	}
	return r.Config, r.Runtime, nil
}

// AddLoadLevel registers a program name (argv[0]'s last element) for load
// leveling, cluster-wide; root only.
func (c *Client) AddLoadLevel(ctx context.Context, name string) error {
	_, err := c.load().SetLoadLevel(ctx, &vprocv1.SetLoadLevelRequest{Name: name})
	return c.wrapSet(err)
}

// RemoveLoadLevel unregisters a program name added with AddLoadLevel;
// root only.
func (c *Client) RemoveLoadLevel(ctx context.Context, name string) error {
	_, err := c.load().SetLoadLevel(ctx, &vprocv1.SetLoadLevelRequest{Name: name, Remove: true})
	return c.wrapSet(err)
}

func (c *Client) wrapSet(err error) error {
	if err == nil {
		return nil
	}
	return c.wrap(err)
}
