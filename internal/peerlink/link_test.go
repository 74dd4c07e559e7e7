package peerlink

import (
	"slices"
	"testing"
)

// msg is the test message: the link fields and a body.
type msg struct {
	seq, ack uint64
	body     string
}

type codec struct{}

func (codec) Seq(m *msg) uint64         { return m.seq }
func (codec) SetSeq(m *msg, seq uint64) { m.seq = seq }
func (codec) Ack(m *msg) uint64         { return m.ack }
func (codec) AckOnly(n uint64) *msg     { return &msg{ack: n} }

func newTestLink() *Link[*msg] { return New[*msg](codec{}) }

func seqs(ms []*msg) []uint64 {
	out := make([]uint64, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.seq)
	}
	return out
}

// closedChan is a done channel that is closed: take never blocks on it.
func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func TestSendLog(t *testing.T) {
	done := closedChan()
	type step struct {
		op   string // push, once, ack, rewind, reset, take
		n    uint64
		want []uint64 // take: the seqs handed out (0: unnumbered)
	}
	tests := []struct {
		name  string
		steps []step
		left  int // messages waiting for an acknowledgement at the end
	}{
		{"in order", []step{{op: "push"}, {op: "push"}, {op: "take", want: []uint64{1, 2}}, {op: "push"}, {op: "take", want: []uint64{3}}}, 3},
		{"ack forgets", []step{{op: "push"}, {op: "push"}, {op: "push"}, {op: "take", want: []uint64{1, 2, 3}}, {op: "ack", n: 2}}, 1},
		{"unnumbered first, once", []step{{op: "push"}, {op: "once"}, {op: "take", want: []uint64{0, 1}}, {op: "take", want: []uint64{}}}, 1},
		{"rewind resends what the other side lacks", []step{{op: "push"}, {op: "push"}, {op: "push"}, {op: "take", want: []uint64{1, 2, 3}},
			{op: "rewind", n: 1}, {op: "take", want: []uint64{2, 3}}}, 2},
		{"rewind drops the old stream's unnumbered", []step{{op: "once"}, {op: "push"}, {op: "rewind", n: 0}, {op: "take", want: []uint64{1}}}, 1},
		{"rewind to everything", []step{{op: "push"}, {op: "take", want: []uint64{1}}, {op: "rewind", n: 1}, {op: "take", want: []uint64{}}, {op: "push"}, {op: "take", want: []uint64{2}}}, 1},
		{"reset numbers from 1", []step{{op: "push"}, {op: "push"}, {op: "reset"}, {op: "take", want: []uint64{}}, {op: "push"}, {op: "take", want: []uint64{1}}}, 1},
		{"an old ack after a rewind", []step{{op: "push"}, {op: "push"}, {op: "take", want: []uint64{1, 2}}, {op: "ack", n: 2}, {op: "rewind", n: 0}, {op: "push"}, {op: "take", want: []uint64{3}}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLink()
			gen := l.log.gen
			for i, st := range tt.steps {
				switch st.op {
				case "push":
					l.Push(&msg{})
				case "once":
					l.PushOnce(&msg{})
				case "ack":
					l.log.ack(st.n)
				case "rewind":
					gen = l.Rewind(st.n)
				case "reset":
					gen = l.Reset()
				case "take":
					got, _ := l.log.take(gen, done)
					if !slices.Equal(seqs(got), st.want) {
						t.Fatalf("step %d: take = %v, want %v", i, seqs(got), st.want)
					}
				}
			}
			if got := l.Pending(); got != tt.left {
				t.Fatalf("pending = %d, want %d", got, tt.left)
			}
		})
	}
}

func TestSendLogOldGenerationStops(t *testing.T) {
	l := newTestLink()
	old := l.log.gen
	l.Push(&msg{})
	l.Rewind(0)
	if _, ok := l.log.take(old, closedChan()); ok {
		t.Fatal("the sender of a replaced stream must stop")
	}
	l.Close()
	if l.Push(&msg{}) || l.PushOnce(&msg{}) {
		t.Fatal("push after close must fail")
	}
	if _, ok := l.log.take(l.log.gen, make(chan struct{})); ok {
		t.Fatal("take after close must fail")
	}
}

func TestRecvState(t *testing.T) {
	tests := []struct {
		seqs []uint64
		want []verdict
		last uint64
	}{
		{[]uint64{1, 2, 3}, []verdict{deliver, deliver, deliver}, 3},
		{[]uint64{1, 1, 2, 1}, []verdict{deliver, duplicate, deliver, duplicate}, 2},
		{[]uint64{1, 3}, []verdict{deliver, gap}, 1},
		{[]uint64{0, 1, 0}, []verdict{deliver, deliver, deliver}, 1},
	}
	for _, tt := range tests {
		var r recvState
		n := 0
		for i, s := range tt.seqs {
			got := r.accept(s, func() { n++ })
			if got != tt.want[i] {
				t.Fatalf("%v: message %d: %v, want %v", tt.seqs, i, got, tt.want[i])
			}
		}
		delivered := 0
		for _, v := range tt.want {
			if v == deliver {
				delivered++
			}
		}
		if n != delivered || r.received() != tt.last {
			t.Fatalf("%v: delivered %d (want %d), last %d (want %d)", tt.seqs, n, delivered, r.received(), tt.last)
		}
		r.reset()
		if r.received() != 0 {
			t.Fatal("reset")
		}
	}
}

func TestResetForgetsBothWays(t *testing.T) {
	l := newTestLink()
	l.Push(&msg{})
	l.recv.accept(1, func() {})
	gen := l.Reset()
	if l.Received() != 0 || l.Pending() != 0 {
		t.Fatalf("after Reset: received %d, pending %d; want 0, 0", l.Received(), l.Pending())
	}
	l.Push(&msg{})
	if got, _ := l.log.take(gen, closedChan()); !slices.Equal(seqs(got), []uint64{1}) {
		t.Fatalf("after Reset the first push is %v, want [1]", seqs(got))
	}
}
