package server

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

var wireMove = migrate.Move{ID: migrate.ID{Source: 2, Inc: 99, N: 3}, CPID: uint64(cpid.MustMake(1, 40)), Origin: 1, Source: 2, Target: 3,
	Mech: migrate.Cooperative}

func TestMoveMessageRoundTrip(t *testing.T) {
	for _, m := range []migrate.Message{
		{Kind: migrate.MsgImage, From: 2, To: 3, Move: wireMove},
		{Kind: migrate.MsgKnow, From: 2, To: 1, Move: wireMove, Outcome: migrate.Commit, Ballot: migrate.Ballot{Epoch: 4, Node: 1},
			Active: true, Prior: migrate.Ballot{Epoch: 3, Node: 1}, Want: migrate.Abort, Reason: "target node 3 went down"},
		{Kind: migrate.MsgAborted, From: 3, To: 2, Move: wireMove, Confirmed: true, Lost: true},
	} {
		got, err := messageOf(messageProto(m))
		if err != nil || got != m {
			t.Errorf("round trip of %v: %v, %v", m, got, err)
		}
	}
}

func TestMoveMessageRefused(t *testing.T) {
	ok := func() *vprocpeerv1.MoveMessage {
		return messageProto(migrate.Message{Kind: migrate.MsgConfirm, From: 3, To: 2, Move: wireMove})
	}
	for _, tc := range []struct {
		name string
		edit func(m *vprocpeerv1.MoveMessage)
		says string
	}{
		{"no move", func(m *vprocpeerv1.MoveMessage) { m.Move = nil }, "without its move"},
		{"no move id", func(m *vprocpeerv1.MoveMessage) { m.Move.Id = nil }, "without its move"},
		{"node 0", func(m *vprocpeerv1.MoveMessage) { m.Move.Target = 0 }, "naming node 0"},
		{"node 512", func(m *vprocpeerv1.MoveMessage) { m.Move.Id.Source = 512 }, "naming node 512"},
		{"bad cpid", func(m *vprocpeerv1.MoveMessage) { m.Move.Cpid = -4 }, "not a cluster pid"},
		{"cpid of another origin", func(m *vprocpeerv1.MoveMessage) { m.Move.Origin = 2 }, "with origin 2"},
		{"unknown mechanism", func(m *vprocpeerv1.MoveMessage) { m.Move.Mech = 9 }, "mechanism 9"},
		{"kind 0", func(m *vprocpeerv1.MoveMessage) { m.Kind = 0 }, "kind 0"},
		{"kind 10", func(m *vprocpeerv1.MoveMessage) { m.Kind = 10 }, "kind 10"},
		{"outcome 3", func(m *vprocpeerv1.MoveMessage) { m.Outcome = 3 }, "outcome 3"},
		{"want 7", func(m *vprocpeerv1.MoveMessage) { m.Want = 7 }, "want 7"},
		{"long reason", func(m *vprocpeerv1.MoveMessage) { m.Reason = strings.Repeat("x", maxReason+1) }, "reason of"},
	} {
		m := ok()
		tc.edit(m)
		if _, err := messageOf(m); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
	if _, err := messageOf(nil); err == nil {
		t.Error("nil accepted")
	}
}

func TestMoveID(t *testing.T) {
	id := migrate.ID{Source: 3, Inc: 1796030725512364167, N: 2}
	if got, err := moveIDOf(moveName(id)); err != nil || got != id {
		t.Errorf("moveIDOf(%q) = %v, %v", moveName(id), got, err)
	}
	for _, bad := range []string{"", "1.2", "1.2.3.4", "0.1.1", "512.1.1", "a.1.1", "1.-1.1", "1.1.18446744073709551616"} {
		if _, err := moveIDOf(bad); err == nil {
			t.Errorf("moveIDOf(%q) accepted", bad)
		}
	}
}

// FuzzMoveMessage decodes a peer's move message as Step and Image do:
// no input panics, what passes is within bounds and reads back the same,
// and the core takes it.
func FuzzMoveMessage(f *testing.F) {
	for _, m := range []migrate.Message{
		{Kind: migrate.MsgImage, From: 2, To: 3, Move: wireMove},
		{Kind: migrate.MsgDecided, From: 1, To: 3, Move: wireMove, Outcome: migrate.Commit, Ballot: migrate.Ballot{Epoch: 4, Node: 1}},
	} {
		raw, _ := proto.Marshal(messageProto(m))
		f.Add(raw, "2.99.3")
	}
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		if id, err := moveIDOf(name); err == nil && (id.Source == 0 || id.Source > cpid.MaxNode || moveName(id) == "") {
			t.Fatalf("moveIDOf(%q) = %v", name, id)
		}
		var p vprocpeerv1.MoveMessage
		if proto.Unmarshal(raw, &p) != nil {
			return
		}
		m, err := messageOf(&p)
		if err != nil {
			return
		}
		if !cpid.CPID(m.Move.CPID).Valid() || cpid.CPID(m.Move.CPID).Node() != m.Move.Origin || len(m.Reason) > maxReason {
			t.Fatalf("accepted %v", m)
		}
		if back, err := messageOf(messageProto(m)); err != nil || back != m {
			t.Fatalf("%v reads back as %v, %v", m, back, err)
		}
		n := migrate.New(migrate.Config{Node: m.To, Incarnation: 1})
		n.Start(time.Unix(0, 0), 1, []uint32{1, 2, 3})
		n.Step(time.Unix(1, 0), m)
		_ = n.Ready()
	})
}
