package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func alive(ns ...int) map[int]Presence {
	m := map[int]Presence{}
	for _, n := range ns {
		m[n] = Presence{Name: fmt.Sprintf("node%d", n), Address: fmt.Sprintf("10.0.0.%d", n)}
	}
	return m
}

func set(ns ...int) map[int]bool {
	m := map[int]bool{}
	for _, n := range ns {
		m[n] = true
	}
	return m
}

// summary renders events as "NODEUP 1@1" for compact expectations.
func summary(es []Event) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%s %d@%d", e.Type, e.Member.Number, e.Epoch))
	}
	return strings.Join(parts, ", ")
}

func states(v View) string {
	var parts []string
	for _, m := range v.Members {
		parts = append(parts, fmt.Sprintf("%d:%s", m.Number, m.State))
	}
	return strings.Join(parts, " ")
}

func TestReconcileSteps(t *testing.T) {
	type step struct {
		alive   map[int]Presence
		leaving map[int]bool
		events  string
		states  string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first nodes come up in number order", []step{
			{alive: alive(2, 1, 3), events: "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3", states: "1:UP 2:UP 3:UP"},
			{alive: alive(1, 2, 3), events: "", states: "1:UP 2:UP 3:UP"},
		}},
		{"failure is NODEDOWN and a restart NODEUP", []step{
			{alive: alive(1, 2, 3), events: "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3", states: "1:UP 2:UP 3:UP"},
			{alive: alive(1, 3), events: "NODEDOWN 2@4", states: "1:UP 2:DOWN 3:UP"},
			{alive: alive(1, 3), events: "", states: "1:UP 2:DOWN 3:UP"},
			{alive: alive(1, 2, 3), events: "NODEUP 2@5", states: "1:UP 2:UP 3:UP"},
		}},
		{"graceful leave after the session is gone", []step{
			{alive: alive(1, 2), events: "NODEUP 1@1, NODEUP 2@2", states: "1:UP 2:UP"},
			{alive: alive(1), leaving: set(2), events: "NODELEAVE 2@3", states: "1:UP 2:LEAVING"},
			{alive: alive(1), leaving: set(2), events: "", states: "1:UP 2:LEAVING"},
			{alive: alive(1), events: "", states: "1:UP 2:LEAVING"},
			{alive: alive(1, 2), events: "NODEUP 2@4", states: "1:UP 2:UP"},
		}},
		{"graceful leave seen while the session is still held", []step{
			{alive: alive(1, 2), events: "NODEUP 1@1, NODEUP 2@2", states: "1:UP 2:UP"},
			{alive: alive(1, 2), leaving: set(2), events: "NODELEAVE 2@3", states: "1:UP 2:LEAVING"},
			{alive: alive(1), leaving: set(2), events: "", states: "1:UP 2:LEAVING"},
		}},
		{"a leaving node never seen before", []step{
			{alive: alive(4), leaving: set(4), events: "NODELEAVE 4@1", states: "4:LEAVING"},
		}},
		{"leave marker of a node already down is not an event", []step{
			{alive: alive(1, 2), events: "NODEUP 1@1, NODEUP 2@2", states: "1:UP 2:UP"},
			{alive: alive(1), events: "NODEDOWN 2@3", states: "1:UP 2:DOWN"},
			{alive: alive(1), leaving: set(2), events: "", states: "1:UP 2:DOWN"},
		}},
		{"simultaneous failures are ordered by number", []step{
			{alive: alive(1, 2, 3, 4, 5), events: "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4, NODEUP 5@5"},
			{alive: alive(1, 3), leaving: set(4), events: "NODEDOWN 2@6, NODELEAVE 4@7, NODEDOWN 5@8", states: "1:UP 2:DOWN 3:UP 4:LEAVING 5:DOWN"},
		}},
		{"everyone gone", []step{
			{alive: alive(1), events: "NODEUP 1@1"},
			{alive: alive(), events: "NODEDOWN 1@2", states: "1:DOWN"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v View
			for i, s := range tt.steps {
				next, events := Reconcile(v, Observed{Alive: s.alive, Leaving: s.leaving, Now: at(i)}, 100)
				if got := summary(events); got != s.events {
					t.Fatalf("step %d: events %q, want %q", i, got, s.events)
				}
				if s.states != "" && states(next) != s.states {
					t.Fatalf("step %d: states %q, want %q", i, states(next), s.states)
				}
				if err := next.Validate(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				for _, e := range events {
					if !e.Time.Equal(at(i)) || !e.Member.Since.Equal(at(i)) {
						t.Fatalf("step %d: event %v not stamped with now", i, e)
					}
				}
				v = next
			}
		})
	}
}

func TestWithoutFailed(t *testing.T) {
	a := alive(1, 2, 3)
	if got := WithoutFailed(a, nil); len(got) != 3 {
		t.Fatalf("no failures: %v", got)
	}
	got := WithoutFailed(a, map[string]bool{"node2": true, "other": true})
	if len(got) != 2 || got[2].Name != "" || got[3].Name != "node3" {
		t.Fatalf("got %v", got)
	}
	if len(a) != 3 {
		t.Fatal("input modified")
	}
}

func TestReconcileDoesNotModifyInput(t *testing.T) {
	v, _ := Reconcile(View{}, Observed{Alive: alive(1, 2), Now: at(0)}, 10)
	before, _ := json.Marshal(v)
	Reconcile(v, Observed{Alive: alive(3), Now: at(1)}, 10)
	after, _ := json.Marshal(v)
	if string(before) != string(after) {
		t.Fatalf("input view changed:\n%s\n%s", before, after)
	}
}

func TestReconcileIdentityChangeIsNotAnEvent(t *testing.T) {
	v, _ := Reconcile(View{}, Observed{Alive: alive(1), Now: at(0)}, 10)
	next, events := Reconcile(v, Observed{Alive: map[int]Presence{1: {Name: "renamed", Address: "10.9.9.9"}}, Now: at(1)}, 10)
	if len(events) != 0 || next.Epoch != v.Epoch {
		t.Fatalf("events %v epoch %d", events, next.Epoch)
	}
	m, _ := next.Member(1)
	if m.Name != "renamed" || m.Address != "10.9.9.9" || !m.Since.Equal(at(0)) {
		t.Fatalf("member %+v", m)
	}
}

func TestReconcileRetention(t *testing.T) {
	var v View
	for i := 0; i < 20; i++ {
		a := alive(1)
		if i%2 == 1 {
			a = alive()
		}
		v, _ = Reconcile(v, Observed{Alive: a, Now: at(i)}, 5)
	}
	if v.Epoch != 20 || len(v.Events) != 5 || v.Events[0].Epoch != 16 {
		t.Fatalf("epoch %d, %d events from %d", v.Epoch, len(v.Events), v.Events[0].Epoch)
	}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	// maxEvents below 1 keeps one.
	v2, _ := Reconcile(View{}, Observed{Alive: alive(1, 2), Now: at(0)}, 0)
	if len(v2.Events) != 1 || v2.Events[0].Epoch != 2 {
		t.Fatalf("events %v", v2.Events)
	}
}

func TestEventsAfter(t *testing.T) {
	var v View
	for i := 0; i < 10; i++ {
		a := alive(1)
		if i%2 == 1 {
			a = alive()
		}
		v, _ = Reconcile(v, Observed{Alive: a, Now: at(i)}, 4) // keeps epochs 7..10
	}
	tests := []struct {
		after   uint64
		want    string
		trimmed bool
	}{
		{after: 10, want: ""},
		{after: 99, want: ""},
		{after: 9, want: "NODEDOWN 1@10"},
		{after: 6, want: "NODEUP 1@7, NODEDOWN 1@8, NODEUP 1@9, NODEDOWN 1@10"},
		{after: 5, trimmed: true},
		{after: 0, trimmed: true},
	}
	for _, tt := range tests {
		got, err := EventsAfter(v, tt.after)
		if tt.trimmed {
			if !errors.Is(err, ErrTrimmed) || !strings.Contains(err.Error(), "oldest kept is 7") {
				t.Errorf("after %d: err %v", tt.after, err)
			}
			continue
		}
		if err != nil || summary(got) != tt.want {
			t.Errorf("after %d: %q %v, want %q", tt.after, summary(got), err, tt.want)
		}
	}
	if _, err := EventsAfter(View{Epoch: 3}, 1); !errors.Is(err, ErrTrimmed) {
		t.Errorf("view without events: %v", err)
	}
	if got, err := EventsAfter(View{}, 0); err != nil || got != nil {
		t.Errorf("empty view: %v %v", got, err)
	}
}

func TestViewJSONRoundTrip(t *testing.T) {
	v, _ := Reconcile(View{}, Observed{Alive: alive(1, 2), Now: at(0)}, 10)
	v, _ = Reconcile(v, Observed{Alive: alive(1), Leaving: set(2), Now: at(1)}, 10)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"state":"LEAVING"`) || !strings.Contains(string(b), `"type":"NODELEAVE"`) {
		t.Fatalf("names not used in JSON: %s", b)
	}
	var back View
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, back) {
		t.Fatalf("round trip differs:\n%+v\n%+v", v, back)
	}
}

func TestValidate(t *testing.T) {
	good, _ := Reconcile(View{}, Observed{Alive: alive(1, 2), Now: at(0)}, 10)
	tests := []struct {
		name string
		mod  func(v *View)
		want string
	}{
		{"ok", func(*View) {}, ""},
		{"number", func(v *View) { v.Members[0].Number = 0 }, "node number 0"},
		{"order", func(v *View) { v.Members[0].Number = 2 }, "not sorted"},
		{"state", func(v *View) { v.Members[1].State = 9 }, "state 9"},
		{"jump", func(v *View) { v.Events[1].Epoch = 5; v.Epoch = 5 }, "jump from 1 to 5"},
		{"type", func(v *View) { v.Events[0].Type = 0 }, "type 0"},
		{"tail", func(v *View) { v.Epoch = 7 }, "not the view epoch 7"},
	}
	for _, tt := range tests {
		v := good
		v.Members = append([]Member(nil), good.Members...)
		v.Events = append([]Event(nil), good.Events...)
		tt.mod(&v)
		err := v.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, s := range []State{Up, Down, Leaving} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("%v: %v %v", s, back, err)
		}
	}
	for _, e := range []EventType{NodeUp, NodeDown, NodeLeave} {
		b, err := e.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back EventType
		if err := back.UnmarshalText(b); err != nil || back != e {
			t.Fatalf("%v: %v %v", e, back, err)
		}
	}
	if State(7).String() != "State(7)" || EventType(7).String() != "EventType(7)" {
		t.Fatal("unknown names")
	}
	if _, err := State(7).MarshalText(); err == nil {
		t.Fatal("marshal of invalid state")
	}
	if _, err := EventType(7).MarshalText(); err == nil {
		t.Fatal("marshal of invalid event")
	}
	var s State
	var e EventType
	if s.UnmarshalText([]byte("SIDEWAYS")) == nil || e.UnmarshalText([]byte("NODEWHAT")) == nil {
		t.Fatal("unmarshal of unknown names")
	}
}

// FuzzDecodeView feeds arbitrary JSON (the view is read from Consul: outside
// input) through the decoder, Validate, Reconcile and EventsAfter: nothing
// may panic, and a view that validates stays valid after a reconciliation.
func FuzzDecodeView(f *testing.F) {
	good, _ := Reconcile(View{}, Observed{Alive: alive(1, 2, 3), Now: at(0)}, 10)
	b, _ := json.Marshal(good)
	f.Add(b, uint64(1), uint8(5))
	f.Add([]byte(`{"epoch":3,"members":[{"number":1,"state":"UP"}],"events":[]}`), uint64(0), uint8(1))
	f.Add([]byte(`{"epoch":18446744073709551615}`), uint64(7), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, after uint64, mask uint8) {
		var v View
		if err := json.Unmarshal(data, &v); err != nil {
			return
		}
		_, _ = EventsAfter(v, after)
		if v.Validate() != nil {
			return
		}
		a := map[int]Presence{}
		for i := 0; i < 8; i++ {
			if mask&(1<<i) != 0 {
				a[i+1] = Presence{Name: fmt.Sprint(i)}
			}
		}
		next, _ := Reconcile(v, Observed{Alive: a, Now: at(0)}, 16)
		if v.Epoch < ^uint64(0)-16 {
			if err := next.Validate(); err != nil {
				t.Fatalf("valid view became invalid: %v", err)
			}
		}
	})
}

func TestDownSessionIsSticky(t *testing.T) {
	withSession := func(sess string) map[int]Presence {
		return map[int]Presence{1: {Name: "node1"}, 2: {Name: "node2", Session: sess}}
	}
	v, _ := Reconcile(View{}, Observed{Alive: withSession("s2"), Holders: map[int]string{1: "s1", 2: "s2"}, Now: at(0)}, 16)
	// Gossip at this node says node2 failed: the shell leaves it out of
	// Alive, but its session still holds the key.
	v, ev := Reconcile(v, Observed{Alive: alive(1), Holders: map[int]string{1: "s1", 2: "s2"}, Now: at(1)}, 16)
	if summary(ev) != "NODEDOWN 2@3" {
		t.Fatalf("down: %s", summary(ev))
	}
	if m, _ := v.Member(2); m.DownSession != "s2" {
		t.Fatalf("down session %q", m.DownSession)
	}
	// Another node whose gossip has not caught up sees s2 still holding
	// the key: no NODEUP.
	v2, ev := Reconcile(v, Observed{Alive: withSession("s2"), Holders: map[int]string{1: "s1", 2: "s2"}, Now: at(2)}, 16)
	if len(ev) != 0 || v2.Epoch != v.Epoch {
		t.Fatalf("dead session brought the node back: %s", summary(ev))
	}
	// A new session does.
	v3, ev := Reconcile(v, Observed{Alive: withSession("s3"), Holders: map[int]string{1: "s1", 2: "s3"}, Now: at(3)}, 16)
	if summary(ev) != "NODEUP 2@4" {
		t.Fatalf("return: %s", summary(ev))
	}
	if m, _ := v3.Member(2); m.DownSession != "" {
		t.Fatalf("down session kept after return: %q", m.DownSession)
	}
}
