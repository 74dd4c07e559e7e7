package server_test

import (
	"context"
	"slices"
	"testing"

	"github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/initfailover/systemdfake"
)

// TestUnbound: the init units that are not PartOf the target, which
// systemd would leave running if initfailover died, are named.
func TestUnbound(t *testing.T) {
	const target = "openssi-init.target"
	sd := systemdfake.New(1, &systemdfake.Timeline{}, target, "a.service", "b.service", "c.service", "d.service")
	sd.SetWants(target, "a.service", "c.service")
	sd.SetPartOf("a.service", "other.target", target)
	sd.SetPartOf("b.service", target)
	sd.SetPartOf("c.service", "other.target")
	got, err := server.Unbound(context.Background(), sd, target, []string{"b.service", "d.service", "a.service", target})
	if err != nil || !slices.Equal(got, []string{"c.service", "d.service"}) {
		t.Errorf("Unbound = %q, %v; want c.service and d.service", got, err)
	}
}
