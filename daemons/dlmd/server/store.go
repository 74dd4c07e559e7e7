package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/consul"
)

// KVStore keeps lockspace owners in Consul KV under
// openssi/dlm/lockspaces/<name> (read once per node and lockspace, never
// on the lock path).
type KVStore struct{ KV *consul.KV }

type lockspaceRecord struct {
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	System bool   `json:"system"`
}

// Lookup implements LockspaceStore.
func (k KVStore) Lookup(ctx context.Context, name string) (lockspace.Config, bool, error) {
	if err := node.ValidStoredLockspace(name); err != nil {
		return lockspace.Config{}, false, err
	}
	var rec lockspaceRecord
	_, found, err := k.KV.Get(ctx, "dlm/lockspaces/"+name, &rec)
	if err != nil {
		return lockspace.Config{}, false, fmt.Errorf("dlm: lockspace %q: %w", name, err)
	}
	return lockspace.Config{UID: rec.UID, GID: rec.GID, System: rec.System}, found, nil
}

// Get implements LockspaceStore.
func (k KVStore) Get(ctx context.Context, name string, creator lockspace.Cred) (lockspace.Config, error) {
	if err := node.ValidStoredLockspace(name); err != nil {
		return lockspace.Config{}, err
	}
	key := "dlm/lockspaces/" + name
	for range 5 {
		var rec lockspaceRecord
		_, found, err := k.KV.Get(ctx, key, &rec)
		if err != nil {
			return lockspace.Config{}, fmt.Errorf("dlm: lockspace %q: %w", name, err)
		}
		if found {
			return lockspace.Config{UID: rec.UID, GID: rec.GID, System: rec.System}, nil
		}
		rec = lockspaceRecord{UID: creator.UID, GID: creator.GID, System: strings.HasPrefix(name, SystemPrefix)}
		if rec.System && creator.UID != 0 {
			return lockspace.Config{}, fmt.Errorf("dlm: create lockspace %q: root only: %w", name, lockspace.ErrAccess)
		}
		ok, err := k.KV.CAS(ctx, key, rec, 0)
		if err != nil {
			return lockspace.Config{}, fmt.Errorf("dlm: create lockspace %q: %w", name, err)
		}
		if ok {
			return lockspace.Config{UID: rec.UID, GID: rec.GID, System: rec.System}, nil
		}
	}
	return lockspace.Config{}, fmt.Errorf("dlm: lockspace %q: creation keeps racing", name)
}
