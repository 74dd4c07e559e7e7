package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/consul"
)

// LockspaceRecord is a lockspace's record in the store.
type LockspaceRecord struct {
	// Name is the name the nodes know it by (node.UserLockspace for a
	// user's own).
	Name   string
	Config lockspace.Config
	// Explicit: created by CreateLockspace, kept until deleted.
	Explicit bool
}

// ErrNoLockspace: the lockspace has no record.
var ErrNoLockspace = errors.New("no such lockspace")

// KVStore keeps lockspace owners in Consul KV under
// openssi/dlm/lockspaces/<name> (read once per node and lockspace, never
// on the lock path, and again after cacheTTL).
type KVStore struct{ KV *consul.KV }

const kvPrefix = "dlm/lockspaces/"

type lockspaceRecord struct {
	UID      uint32 `json:"uid"`
	GID      uint32 `json:"gid"`
	System   bool   `json:"system"`
	Mode     uint32 `json:"mode,omitempty"`
	Explicit bool   `json:"explicit,omitempty"`
}

func (r lockspaceRecord) config() lockspace.Config {
	return lockspace.Config{UID: r.UID, GID: r.GID, System: r.System, Mode: r.Mode}
}

func recordOf(cfg lockspace.Config, explicit bool) lockspaceRecord {
	return lockspaceRecord{UID: cfg.UID, GID: cfg.GID, System: cfg.System, Mode: cfg.Mode, Explicit: explicit}
}

// Lookup implements LockspaceStore.
func (k KVStore) Lookup(ctx context.Context, name string) (lockspace.Config, bool, error) {
	if err := node.ValidStoredLockspace(name); err != nil {
		return lockspace.Config{}, false, err
	}
	var rec lockspaceRecord
	_, found, err := k.KV.Get(ctx, kvPrefix+name, &rec)
	if err != nil {
		return lockspace.Config{}, false, fmt.Errorf("dlm: lockspace %q: %w", name, err)
	}
	return rec.config(), found, nil
}

// Get implements LockspaceStore.
func (k KVStore) Get(ctx context.Context, name string, creator lockspace.Cred) (lockspace.Config, error) {
	if err := node.ValidStoredLockspace(name); err != nil {
		return lockspace.Config{}, err
	}
	for range 5 {
		cfg, found, err := k.Lookup(ctx, name)
		if err != nil || found {
			return cfg, err
		}
		cfg = lockspace.Config{UID: creator.UID, GID: creator.GID, System: strings.HasPrefix(name, SystemPrefix)}
		if err := k.Create(ctx, name, cfg, false); !errors.Is(err, lockspace.ErrExists) {
			return cfg, err
		}
	}
	return lockspace.Config{}, fmt.Errorf("dlm: lockspace %q: creation keeps racing", name)
}

// Create implements LockspaceStore.
func (k KVStore) Create(ctx context.Context, name string, cfg lockspace.Config, explicit bool) error {
	if err := node.ValidStoredLockspace(name); err != nil {
		return err
	}
	ok, err := k.KV.CAS(ctx, kvPrefix+name, recordOf(cfg, explicit), 0)
	switch {
	case err != nil:
		return fmt.Errorf("dlm: create lockspace %q: %w", name, err)
	case !ok:
		return fmt.Errorf("dlm: create lockspace %q: %w", name, lockspace.ErrExists)
	}
	return nil
}

// Update implements LockspaceStore.
func (k KVStore) Update(ctx context.Context, name string, change func(*lockspace.Config) error) (LockspaceRecord, error) {
	for range 5 {
		var rec lockspaceRecord
		index, found, err := k.KV.GetConsistent(ctx, kvPrefix+name, &rec)
		if err != nil {
			return LockspaceRecord{}, fmt.Errorf("dlm: lockspace %q: %w", name, err)
		}
		if !found {
			return LockspaceRecord{}, fmt.Errorf("dlm: %w", ErrNoLockspace)
		}
		cfg := rec.config()
		if err := change(&cfg); err != nil {
			return LockspaceRecord{}, err
		}
		// A lockspace its owner changed is kept until deleted.
		ok, err := k.KV.CAS(ctx, kvPrefix+name, recordOf(cfg, true), index)
		if err != nil {
			return LockspaceRecord{}, fmt.Errorf("dlm: lockspace %q: %w", name, err)
		}
		if ok {
			return LockspaceRecord{Name: name, Config: cfg, Explicit: true}, nil
		}
	}
	return LockspaceRecord{}, fmt.Errorf("dlm: lockspace %q: changes keep racing", name)
}

// Delete implements LockspaceStore.
func (k KVStore) Delete(ctx context.Context, name string) error {
	if err := k.KV.Delete(ctx, kvPrefix+name); err != nil {
		return fmt.Errorf("dlm: delete lockspace %q: %w", name, err)
	}
	return nil
}

// List implements LockspaceStore.
func (k KVStore) List(ctx context.Context) ([]LockspaceRecord, error) {
	es, _, err := k.KV.List(ctx, kvPrefix, consul.Wait{})
	if err != nil {
		return nil, fmt.Errorf("dlm: list lockspaces: %w", err)
	}
	out := make([]LockspaceRecord, 0, len(es))
	for _, e := range es {
		var rec lockspaceRecord
		if err := e.Decode(&rec); err != nil {
			continue
		}
		out = append(out, LockspaceRecord{Name: strings.TrimPrefix(e.Key, kvPrefix), Config: rec.config(), Explicit: rec.Explicit})
	}
	return out, nil
}
