package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/openssi/openssi/client/cluster"
)

// WaitUp connects to the local clmsd and waits until it reports this node
// UP (retrying, and logging what it waits for); it returns the client,
// this node and the view it saw. Every daemon but clmsd starts with it.
func (e *Env) WaitUp(ctx context.Context) (c *cluster.Client, me cluster.Node, v cluster.View, err error) {
	socket := cluster.SocketIn(e.Config.Cluster.RunDir)
	err = e.Retry(ctx, 100*time.Millisecond, 2*time.Second, func() error {
		var err error
		if c, err = cluster.New(ctx, cluster.WithSocket(socket)); err == nil {
			if me, err = c.ThisNode(ctx); err == nil {
				if v, err = c.Nodes(ctx); err == nil && me.State != cluster.Up {
					err = fmt.Errorf("node %d is %s", me.Number, me.State)
				}
			}
			if err != nil {
				c.Close()
				c = nil
			}
		}
		if err != nil && ctx.Err() == nil {
			e.Log.WithError(err).Info("waiting for clmsd")
		}
		return err
	})
	return c, me, v, err
}
