// This file is the unit's ExecStopPost: openssi-lvsd --release-vips.

package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/vip"
	"github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/daemon"
)

// releaseVIPs removes every VIP of openssi.yaml from this node's
// interfaces: the unit's ExecStopPost, run however the daemon ended. A
// director that crashed (or was killed) left its VIPs on; the next
// director may take them stop_timeout after the lock, and systemd runs
// this at once, well before.
func releaseVIPs(stderr io.Writer) int {
	return release(config.DefaultPath, vip.Remove, stderr)
}

// release removes with remove the VIPs of lvsd.vips in the file at path.
// It reads that list only, not the whole configuration (whose
// validation, or a forwarding this kernel lacks, must not leave a VIP on
// a crashed director), never touches the forwarding, and goes on past an
// entry it cannot read or a removal that fails: exit 1 then, naming the
// entry.
func release(path string, remove func(ifname string, vip netip.Prefix) error, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "lvsd: releasing the VIPs: %v\n", err)
		return daemon.ExitError
	}
	var doc struct {
		Lvsd struct {
			VIPs []yaml.Node `yaml:"vips"`
		} `yaml:"lvsd"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		fmt.Fprintf(stderr, "lvsd: releasing the VIPs: %s.vips of %s: %v\n", lvsdspec.Name, path, err)
		return daemon.ExitError
	}
	code := daemon.ExitOK
	for i, n := range doc.Lvsd.VIPs {
		key := fmt.Sprintf("%s.vips[%d]", lvsdspec.Name, i)
		var v struct {
			Address   string `yaml:"address"`
			Interface string `yaml:"interface"`
		}
		if err := n.Decode(&v); err != nil {
			fmt.Fprintf(stderr, "lvsd: releasing %s: %v\n", key, err)
			code = daemon.ExitError
			continue
		}
		p, err := lvsdspec.ParseVIP(v.Address)
		if err != nil {
			fmt.Fprintf(stderr, "lvsd: releasing %s.address %q: %v\n", key, v.Address, err)
			code = daemon.ExitError
			continue
		}
		if err := remove(v.Interface, p); err != nil {
			fmt.Fprintf(stderr, "lvsd: releasing %s (%s on %s): %v\n", key, v.Address, v.Interface, err)
			code = daemon.ExitError
		}
	}
	return code
}
