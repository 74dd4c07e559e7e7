package lab

import (
	"net/netip"
	"testing"
)

func TestParseNeigh(t *testing.T) {
	vip := netip.MustParseAddr("10.77.0.100")
	for _, tc := range []struct {
		name  string
		js    string
		want  Neighbor
		found bool
	}{
		{"empty output", "", Neighbor{}, false},
		{"empty list", "[]\n", Neighbor{}, false},
		{"reachable", `[{"dst":"10.77.0.100","lladdr":"AE:01:02:03:04:05","state":["REACHABLE"]}]`, Neighbor{MAC: "ae:01:02:03:04:05", State: []string{"REACHABLE"}}, true},
		{"incomplete has no MAC", `[{"dst":"10.77.0.100","state":["INCOMPLETE"]}]`, Neighbor{State: []string{"INCOMPLETE"}}, true},
		{"another address", `[{"dst":"10.77.0.12","lladdr":"ae:01:02:03:04:05","state":["STALE"]}]`, Neighbor{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := parseNeigh([]byte(tc.js), vip)
			if err != nil || found != tc.found || got.MAC != tc.want.MAC || len(got.State) != len(tc.want.State) {
				t.Fatalf("parseNeigh = %+v, %v, %v; want %+v, %v", got, found, err, tc.want, tc.found)
			}
		})
	}
	if _, _, err := parseNeigh([]byte("{"), vip); err == nil {
		t.Fatal("parseNeigh of bad JSON: no error")
	}
}
