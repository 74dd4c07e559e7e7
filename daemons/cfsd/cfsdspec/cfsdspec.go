// Package cfsdspec describes cfsd, OpenSSI's cluster filesystem: its
// name, what it needs, its section of openssi.yaml (Config, Default,
// Validate; the exports) and the sandbox of its unit. The daemon's main,
// the registry (internal/daemons) and through it packaging, `ssi status`
// and the test harnesses read it.
package cfsdspec

import (
	_ "embed" // the cfsd section of the shipped openssi.yaml
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "cfsd"

// MaxExports bounds the exports of a cluster.
const MaxExports = 64

//go:embed openssi.yaml
var example string

// Daemon is cfsd's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "cfsd",
	Unit:    "openssi-cfsd.service",
	Summary: "cluster filesystem: serves each export from its node and mounts every export at the same path on every node (FUSE)",
	About: "cfsd serves the exports of cfsd.exports that this node serves (a local\n" +
		"directory each) to the other nodes' cfsd over mutual TLS, and mounts every\n" +
		"export at its cluster path on this node with FUSE, so the same files are at the\n" +
		"same path on every node. Every operation is done on the serving node as the\n" +
		"caller (its uid, gid and groups), so that node's kernel checks permissions.\n" +
		"Coherence is close-to-open: what a node wrote and closed, another node's next\n" +
		"open reads. It runs as root to mount and to act as each caller.",
	// Which nodes are UP, and who holds each number, come from clmsd.
	Needs: []string{clmsdspec.Name},
	Config: settings.NewSection(Name, Default, example,
		settings.Flag{Name: "rpc-port", Key: "rpc_port", Usage: "inter-node gRPC port"},
	),
	Hardening: hardening,
}

// Config holds the settings of the cluster filesystem (YAML `cfsd:`).
type Config struct {
	// RPCPort is the TCP port of cfsd's inter-node gRPC server (the file
	// protocol), 1..65535. Default 7108.
	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
	// Timeout bounds each file operation a mount sends to its server:
	// past it the caller gets EIO, never an unkillable hang. 1s..10m.
	// Default 10s.
	Timeout time.Duration `mapstructure:"timeout" want:"a duration 1s..10m such as 10s"`
	// Exports are the exported directories. At most MaxExports. Default
	// none. The same list on every node.
	Exports []Export `mapstructure:"exports" want:"a list of {name, path, mount, server}"`
}

// Export is one exported directory.
type Export struct {
	// Name names it in the protocol and in messages: 1 to 32 of a-z,
	// 0-9, '-' and '_', starting with a letter or digit.
	Name string `mapstructure:"name"`
	// Path is the directory on the serving node (absolute, not /); it
	// must exist there, on a file system that can name files by handle
	// (ext4, xfs, btrfs, tmpfs).
	Path string `mapstructure:"path"`
	// Mount is where every node mounts it (absolute, not /), e.g.
	// /cluster/home; two exports' mounts may not be one inside the other.
	Mount string `mapstructure:"mount"`
	// Server is the node number of the node that serves it.
	Server int `mapstructure:"server"`
}

// Default returns cfsd's settings when nothing overrides them.
func Default() Config {
	return Config{RPCPort: 7108, Timeout: 10 * time.Second, Exports: []Export{}}
}

var exportName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil.
func (c *Config) Validate() error {
	if err := settings.Checks(Name, c,
		settings.Check{Key: "rpc_port", Value: strconv.Itoa(c.RPCPort), OK: settings.IsPort(c.RPCPort)},
		settings.Check{Key: "timeout", Value: c.Timeout.String(), OK: c.Timeout >= time.Second && c.Timeout <= 10*time.Minute},
		settings.Check{Key: "exports", Value: strconv.Itoa(len(c.Exports)) + " entries", OK: len(c.Exports) <= MaxExports},
	); err != nil {
		return err
	}
	for i, e := range c.Exports {
		key := fmt.Sprintf("%s.exports[%d]", Name, i)
		switch {
		case !exportName.MatchString(e.Name):
			return settings.NewError(key+".name", e.Name, "a name of 1 to 32 of a-z, 0-9, '-' and '_', starting with a letter or digit")
		case !cleanDir(e.Path):
			return settings.NewError(key+".path", e.Path, "the directory to export on the serving node: an absolute clean path other than /")
		case !cleanDir(e.Mount):
			return settings.NewError(key+".mount", e.Mount, "where every node mounts it: an absolute clean path other than /, such as /cluster/home")
		case e.Server < 1 || e.Server > membership.MaxNodeNumber:
			return settings.NewError(key+".server", strconv.Itoa(e.Server), fmt.Sprintf("the number of the node that serves it, 1..%d", membership.MaxNodeNumber))
		}
		for j, o := range c.Exports[:i] {
			if o.Name == e.Name {
				return settings.NewError(key+".name", e.Name, fmt.Sprintf("a name of its own: exports[%d] has it", j))
			}
			if inside(e.Mount, o.Mount) || inside(o.Mount, e.Mount) {
				return settings.NewError(key+".mount", e.Mount, fmt.Sprintf("a mount outside exports[%d]'s %s, and not holding it", j, o.Mount))
			}
		}
	}
	return nil
}

func cleanDir(p string) bool { return path.IsAbs(p) && path.Clean(p) == p && p != "/" }

// inside says whether p is dir or under it.
func inside(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// From returns cfsd's section of a loaded configuration.
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}
