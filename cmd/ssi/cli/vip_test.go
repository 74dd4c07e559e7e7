package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/openssi/openssi/client/lvs"
)

func TestRenderVip(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := lvs.Status{
		Node: 2, Director: 2, Directing: true, Since: now.Add(-90 * time.Second),
		VIPs:      []lvs.VIP{{Address: "10.0.0.100/24", Interface: "eth0"}},
		Listening: []string{"tcp/80"},
		Ports: []lvs.Port{
			{Port: "tcp/80", FromConfig: true, Backends: []lvs.Backend{
				{Node: 2, Address: "10.0.0.2:80", Weight: 200, Active: 3},
				{Node: 3, Address: "10.0.0.3:80", Weight: 100, Active: 1},
			}},
			{Port: "tcp/443", Affinity: "source", AffinityTimeout: 5 * time.Minute, ProxyProtocol: true},
		},
	}
	var b bytes.Buffer
	renderVip(&b, st, now)
	want := `VIP: 10.0.0.100/24 on eth0
director: node 2 (this node, since 1m ago)
node 2 listens on: tcp/80
PORT     OPTIONS                             NODE  BACKEND      WEIGHT  ACTIVE
tcp/80   -                                   2     10.0.0.2:80  200     3
                                             3     10.0.0.3:80  100     1
tcp/443  proxy-protocol,affinity 5m0s,added  -     -            -       -
`
	if b.String() != want {
		t.Errorf("renderVip:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	renderVip(&b, lvs.Status{Node: 1}, now)
	if want := "no VIP (see lvsd.vips in /etc/openssi/openssi.yaml)\ndirector: none\nno registered port (see lvsd.ports, ssi vip port add)\n"; b.String() != want {
		t.Errorf("renderVip(empty):\n%s\nwant:\n%s", b.String(), want)
	}
}
