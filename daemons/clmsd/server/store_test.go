package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/consul"
)

func pair(key string, v any, session string, idx uint64) consul.Entry {
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case nil:
	default:
		b, _ = json.Marshal(x)
	}
	return consul.Entry{Key: key, Value: b, Session: session, ModifyIndex: idx}
}

func TestParseSnapshot(t *testing.T) {
	view, _ := membership.Reconcile(membership.View{}, membership.Observed{
		Alive: map[int]membership.Presence{1: {Name: "a"}}, Now: time.Unix(1, 0),
	}, 10)
	pairs := []consul.Entry{
		pair(keyView, view, "", 40),
		pair(keyAlive+"1", membership.Claim{Name: "a", Address: "10.0.0.1"}, "s1", 41),
		pair(keyAlive+"2", membership.Claim{Name: "b"}, "", 42),   // released: not alive
		pair(keyAlive+"3", []byte("{bad json"), "s3", 43),         // alive, undecodable value
		pair(keyAlive+"x", membership.Claim{Name: "c"}, "s4", 44), // bad number
		pair(keyLeaving+"2", membership.Presence{Name: "b"}, "", 45),
		pair(keyLeaving+"0", nil, "", 46),
		pair(keyNodes+"1", membership.Claim{Name: "a", Address: "10.0.0.1"}, "", 47),
		pair(keyNodes+"2", []byte("nope"), "", 48),
		pair(keyNodes+"9999", membership.Claim{Name: "z"}, "", 49),
		pair("clms/other", nil, "", 50),
	}
	s, err := parseSnapshot(pairs, 99)
	if err != nil {
		t.Fatal(err)
	}
	if s.index != 99 || s.viewIndex != 40 || s.view.Epoch != 1 {
		t.Fatalf("index %d view index %d epoch %d", s.index, s.viewIndex, s.view.Epoch)
	}
	if len(s.observed.Alive) != 2 || s.observed.Alive[1].Address != "10.0.0.1" || !s.live[3] || s.live[2] {
		t.Fatalf("alive %+v live %v", s.observed.Alive, s.live)
	}
	if !s.observed.Leaving[2] || len(s.observed.Leaving) != 1 {
		t.Fatalf("leaving %v", s.observed.Leaving)
	}
	if len(s.claims) != 1 || s.claimIdx[1] != 47 {
		t.Fatalf("claims %v %v", s.claims, s.claimIdx)
	}
	if len(s.problems) != 5 {
		t.Fatalf("problems %q", s.problems)
	}

	// A view that does not decode or validate stops the loop from writing.
	for _, bad := range [][]byte{[]byte("{"), []byte(`{"epoch":2,"members":[{"number":0,"state":"UP"}]}`)} {
		if _, err := parseSnapshot([]consul.Entry{pair(keyView, bad, "", 1)}, 1); err == nil || !strings.Contains(err.Error(), "clms/view") {
			t.Fatalf("bad view %q: %v", bad, err)
		}
	}
}

// FuzzParseSnapshot: KV content is outside input (anyone with KV write
// access to the prefix can put anything there); decoding must never panic
// and a snapshot that parses must reconcile to a valid view.
func FuzzParseSnapshot(f *testing.F) {
	f.Add("clms/view", []byte(`{"epoch":1,"members":[{"number":1,"state":"UP"}],"events":[{"epoch":1,"type":"NODEUP","member":{"number":1,"state":"UP"}}]}`), "clms/alive/2", []byte(`{"name":"b"}`), true)
	f.Add("clms/nodes/3", []byte(`{"name":"c"}`), "clms/leaving/3", []byte(``), false)
	f.Fuzz(func(t *testing.T, k1 string, v1 []byte, k2 string, v2 []byte, held bool) {
		sess := ""
		if held {
			sess = "s"
		}
		s, err := parseSnapshot([]consul.Entry{pair(k1, v1, sess, 1), pair(k2, v2, sess, 2)}, 3)
		if err != nil {
			return
		}
		s.observed.Now = time.Unix(5, 0)
		if s.view.Epoch > 1<<62 {
			return
		}
		next, _ := membership.Reconcile(s.view, s.observed, 8)
		if err := next.Validate(); err != nil {
			t.Fatalf("reconciled view invalid: %v", err)
		}
	})
}
