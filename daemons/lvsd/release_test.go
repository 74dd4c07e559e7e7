package main

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestReleaseVIPs: the unit's ExecStopPost removes every VIP of
// lvsd.vips it can read, whatever else the file holds (a key another
// version does not know, a forwarding this kernel cannot do, a bad
// entry) and whichever removal fails: a VIP left on a crashed director
// answers next to the new one.
func TestReleaseVIPs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "openssi.yaml")
	yaml := `
cluster:
  node_name: n1
  some_future_key: 3
unknown_section:
  x: 1
lvsd:
  forwarding: ipvs-nat
  vips:
    - {address: 10.0.0.100/24, interface: eth0}
    - {address: not-an-address, interface: eth0}
    - {address: 10.0.1.100/24, interface: eth1}
    - {address: 10.0.2.100/24, interface: eth2}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var removed []string
	remove := func(ifname string, p netip.Prefix) error {
		removed = append(removed, ifname+" "+p.String())
		if ifname == "eth1" {
			return errors.New("operation not permitted")
		}
		return nil
	}
	var stderr bytes.Buffer
	code := release(path, remove, &stderr)
	want := []string{"eth0 10.0.0.100/24", "eth1 10.0.1.100/24", "eth2 10.0.2.100/24"}
	if !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v, want %v (stderr %q)", removed, want, stderr.String())
	}
	if code != 1 {
		t.Errorf("exit %d, want 1 (a removal failed)", code)
	}
	for _, w := range []string{"lvsd.vips[1].address", "lvsd.vips[2]"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr %q does not name %s", stderr.String(), w)
		}
	}
}
