package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
)

// TestConsulLevels: the runtime list of programs placed by load is one key
// per name under openssi/vproc/loadlevel/, seen by every node.
func TestConsulLevels(t *testing.T) {
	c := consultest.Start(t, consulagent.Options{Servers: 1, NoConnect: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := ConsulLevels{KV: consul.NewKV(c.Client())}
	if names, err := l.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("List of none = %v %v", names, err)
	}
	for _, n := range []string{"make", "gcc"} {
		if err := l.Add(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Add(ctx, "../clms/view"); err == nil {
		t.Error("Add of a name with a '/' was taken")
	}
	// A key that is not a program name (written by hand) is skipped.
	if err := consul.NewKV(c.Client()).Put(ctx, LevelsPrefix+"a b", true); err != nil {
		t.Fatal(err)
	}
	if p, _, err := c.Client().KV().Get("openssi/vproc/loadlevel/make", nil); err != nil || p == nil {
		t.Fatalf("openssi/vproc/loadlevel/make: %v %v", p, err)
	}
	if names, err := l.List(ctx); err != nil || !slices.Equal(names, []string{"gcc", "make"}) {
		t.Errorf("List = %v %v, want [gcc make]", names, err)
	}
	if err := l.Remove(ctx, "make"); err != nil {
		t.Fatal(err)
	}
	if names, err := l.List(ctx); err != nil || !slices.Equal(names, []string{"gcc"}) {
		t.Errorf("List after Remove = %v %v, want [gcc]", names, err)
	}
}
