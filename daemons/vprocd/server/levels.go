package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/openssi/openssi/daemons/vprocd/load"
	"github.com/openssi/openssi/internal/consul"
)

// LevelsPrefix is the Consul KV prefix (under openssi/) of the runtime
// list of programs placed by load: one key per program name.
const LevelsPrefix = "vproc/loadlevel/"

// ConsulLevels is the runtime list of programs placed by load in Consul
// KV, shared by every node's vprocd.
type ConsulLevels struct{ KV *consul.KV }

// List returns the names registered; keys that are not a program name are
// skipped.
func (c ConsulLevels) List(ctx context.Context) ([]string, error) {
	es, _, err := c.KV.List(ctx, LevelsPrefix, consul.Wait{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		name := strings.TrimPrefix(strings.TrimPrefix(e.Key, consul.Prefix), LevelsPrefix)
		if load.CheckProgram(name) == nil {
			out = append(out, name)
		}
	}
	return out, nil
}

// Add registers name.
func (c ConsulLevels) Add(ctx context.Context, name string) error {
	if err := load.CheckProgram(name); err != nil {
		return err
	}
	if err := c.KV.Put(ctx, LevelsPrefix+name, true); err != nil {
		return fmt.Errorf("registering %q: %w", name, err)
	}
	return nil
}

// Remove unregisters name.
func (c ConsulLevels) Remove(ctx context.Context, name string) error {
	if err := load.CheckProgram(name); err != nil {
		return err
	}
	if err := c.KV.Delete(ctx, LevelsPrefix+name); err != nil {
		return fmt.Errorf("unregistering %q: %w", name, err)
	}
	return nil
}
