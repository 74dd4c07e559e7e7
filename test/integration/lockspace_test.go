package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/daemons/dlmd/server"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
)

// TestLockspaceRecordsInConsul: dlmd's lockspace records in real Consul
// KV: a user's own name is its own key, first use creates once, explicit
// creation refuses a name that exists, a change makes the record
// explicit, and records are listed and deleted.
func TestLockspaceRecordsInConsul(t *testing.T) {
	t.Parallel()
	c := consultest.Start(t, consulagent.Options{Servers: 1, NoConnect: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := server.KVStore{KV: consul.NewKV(c.Agents[0].Client())}
	alice, bob := lockspace.Cred{UID: 1000, GID: 1000}, lockspace.Cred{UID: 2000, GID: 2000}
	aJobs, bJobs := node.UserLockspace(alice.UID, "jobs"), node.UserLockspace(bob.UID, "jobs")

	if _, found, err := st.Lookup(ctx, aJobs); err != nil || found {
		t.Fatalf("Lookup before first use: %v, %v", found, err)
	}
	for _, u := range []lockspace.Cred{bob, alice} {
		name := node.UserLockspace(u.UID, "jobs")
		cfg, err := st.Get(ctx, name, u)
		if err != nil || cfg.UID != u.UID {
			t.Fatalf("first use of %s by uid %d: %+v, %v", name, u.UID, cfg, err)
		}
	}
	if cfg, err := st.Get(ctx, aJobs, bob); err != nil || cfg.UID != alice.UID {
		t.Fatalf("second Get keeps the first owner: %+v, %v", cfg, err)
	}
	if err := st.Create(ctx, aJobs, lockspace.Config{UID: 1000}, true); !errors.Is(err, lockspace.ErrExists) {
		t.Fatalf("Create of an existing record: %v", err)
	}
	if err := st.Create(ctx, "shared", lockspace.Config{GID: 100, Mode: 0o660}, true); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Update(ctx, aJobs, func(c *lockspace.Config) error { c.Mode = 0o600; return nil })
	if err != nil || rec.Config.Mode != 0o600 || !rec.Explicit {
		t.Fatalf("Update: %+v, %v", rec, err)
	}
	if _, err := st.Update(ctx, "nope", func(*lockspace.Config) error { return nil }); !errors.Is(err, server.ErrNoLockspace) {
		t.Fatalf("Update of no record: %v", err)
	}
	recs, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []server.LockspaceRecord{
		{Name: "shared", Config: lockspace.Config{GID: 100, Mode: 0o660}, Explicit: true},
		{Name: aJobs, Config: lockspace.Config{UID: 1000, GID: 1000, Mode: 0o600}, Explicit: true},
		{Name: bJobs, Config: lockspace.Config{UID: 2000, GID: 2000}},
	}
	slices.SortFunc(recs, func(x, y server.LockspaceRecord) int { return strings.Compare(x.Name, y.Name) })
	slices.SortFunc(want, func(x, y server.LockspaceRecord) int { return strings.Compare(x.Name, y.Name) })
	if !slices.Equal(recs, want) {
		t.Fatalf("List:\n%+v\nwant\n%+v", recs, want)
	}
	if err := st.Delete(ctx, bJobs); err != nil {
		t.Fatal(err)
	}
	if _, found, err := st.Lookup(ctx, bJobs); err != nil || found {
		t.Fatalf("Lookup after Delete: %v, %v", found, err)
	}
}
