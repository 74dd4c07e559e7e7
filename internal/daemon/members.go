package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/internal/rpc"
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

// Advertise is the address peers reach this node's daemons at:
// cluster.advertise_address, else this node's address in the membership.
func (e *Env) Advertise(me cluster.Node) string {
	if a := e.Config.Cluster.AdvertiseAddress; a != "" {
		return a
	}
	return me.Address
}

// Holder returns, for node number n, the Consul node name of the node
// that holds n's claim, as the local clmsd reports it (the member's name,
// taken from the claim, never from the shared view): a peer is believed to
// be node n only with that node's certificate.
func Holder(members *cluster.Client) func(context.Context, uint32) (string, error) {
	return func(ctx context.Context, n uint32) (string, error) {
		nd, err := members.Node(ctx, int(n))
		if err != nil {
			return "", err
		}
		return nd.Name, nil
	}
}

// PeerAddress returns, for node number n, the address of the instance of
// the named daemon registered on the Consul node that holds n's claim (see
// [Holder]): any node may register an instance claiming n, and only the
// holder's counts.
func PeerAddress(members *cluster.Client, client *api.Client, daemon string) func(context.Context, uint32) (string, error) {
	holder := Holder(members)
	return func(ctx context.Context, n uint32) (string, error) {
		name, err := holder(ctx, n)
		if err != nil {
			return "", err
		}
		if name == "" {
			return "", fmt.Errorf("node %d has no known holder", n)
		}
		return rpc.LookupRegisteredOn(ctx, client, daemon, int(n), name)
	}
}
