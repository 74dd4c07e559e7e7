package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/cmd/ssi/cli"
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

// TestDlmSsiLockspace: `ssi lockspace` against real dlmds and Consul: a
// lockspace created on one node is seen and changed from the other, is
// not deleted while it has a lock, and is deleted after.
func TestDlmSsiLockspace(t *testing.T) {
	c := startDlm(t, 2, 0)
	ctx := ctxFor(t, 30*time.Second)
	run := func(node int, args ...string) (int, string) {
		var out, errb strings.Builder
		code := cli.Main(append([]string{"--run-dir", c.Nodes[node].RunDir}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run(0, "lockspace", "create", "--group", "100", "--mode", "0640", "team"); code != 0 || !strings.Contains(out, "0640") {
		t.Fatalf("ssi lockspace create: exit %d, %q", code, out)
	}
	if code, out := run(1, "lockspace", "create", "team"); code != 1 || !strings.Contains(out, "lockspace exists") {
		t.Fatalf("ssi lockspace create of an existing name: exit %d, %q", code, out)
	}
	if code, out := run(1, "lockspace", "chmod", "0660", "team"); code != 0 || !strings.Contains(out, "0660") {
		t.Fatalf("ssi lockspace chmod: exit %d, %q", code, out)
	}
	if code, out := run(1, "lockspace", "chown", "4000001:4000002", "team"); code != 0 || !strings.Contains(out, "4000001  4000002") {
		t.Fatalf("ssi lockspace chown: exit %d, %q", code, out)
	}
	a := dlmClient(t, ctx, c.Nodes[1])
	l, err := a.Lock(ctx, "team", "r", dlm.PR)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := run(0, "lockspace", "delete", "team"); code != 1 || !strings.Contains(out, "lockspace has locks") {
		t.Fatalf("ssi lockspace delete with a lock: exit %d, %q", code, out)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, out := run(0, "lockspace", "delete", "team")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssi lockspace delete after the unlock: exit %d, %q", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out := run(1, "lockspace", "list"); code != 0 || strings.Contains(out, "team") {
		t.Fatalf("ssi lockspace list after delete: exit %d, %q", code, out)
	}
}
