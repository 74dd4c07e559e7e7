package server

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMismatchedLeaseIsTheClusters: node 3's dlmd.lease is 2s, the
// others' 300ms. The hellos, pings and pongs carry it, so nodes 1 and 2
// follow the cluster's (the largest) and warn; node 3 cut off while its
// client holds EX must fence before node 1's client is granted.
func TestMismatchedLeaseIsTheClusters(t *testing.T) {
	for _, master := range []uint32{3, 1} {
		t.Run(fmt.Sprintf("master%d", master), func(t *testing.T) {
			testPartitionFence(t, master, clusterOpts{leases: map[uint32]time.Duration{3: 2 * time.Second}})
		})
	}
}

// TestLeaseWarning: a node set differently from the cluster logs both
// values.
func TestLeaseWarning(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{leases: map[uint32]time.Duration{3: time.Second}})
	waitFor(t, 5*time.Second, "nodes 1 and 2 to warn", func() bool {
		n := 0
		for _, l := range strings.Split(c.logs.String(), "\n") {
			if strings.Contains(l, "dlmd.lease differs from the cluster's") && strings.Contains(l, "cluster=1s") && strings.Contains(l, "setting=300ms") {
				n++
			}
		}
		return n == 2
	})
}
