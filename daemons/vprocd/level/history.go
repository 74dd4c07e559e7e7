package level

import (
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// DefaultHistory is how many entries a History keeps by default.
const DefaultHistory = 32

// Kinds the shell adds to those of Decide, for `ssi loadlevel status`.
const (
	// KindMoved: a move Decide chose ended with the process on its
	// target.
	KindMoved Kind = "moved"
	// KindFailed: a move Decide chose failed; the process runs on where
	// it was (Reason says why).
	KindFailed Kind = "failed"
	// KindDisabled: the leveler is turned off (vprocd.leveler.enabled).
	KindDisabled Kind = "disabled"
	// KindInFlight: this node's previous move has not ended yet (one at
	// a time).
	KindInFlight Kind = "in-flight"
)

// Entry is one line of a History: a decision, or a run of the same
// answer over consecutive periods.
type Entry struct {
	// First and Last are when it was first and last taken; Count how
	// many periods in a row gave it.
	First, Last time.Time
	Count       int
	Kind        Kind
	Proc        cpid.CPID
	From, To    uint32
	// ProcLoad, FromLoad and ToLoad are Decision's.
	ProcLoad, FromLoad, ToLoad float64
	Reason                     string
}

// EntryOf is the entry of a decision taken at at.
func EntryOf(at time.Time, d Decision) Entry {
	return Entry{First: at, Last: at, Count: 1, Kind: d.Kind, Proc: d.Proc, From: d.From, To: d.To,
		ProcLoad: d.ProcLoad, FromLoad: d.FromLoad, ToLoad: d.ToLoad, Reason: d.Reason}
}

// History keeps the last entries, at most its size: the recent decisions
// of one node. An entry that repeats the previous one's answer (the same
// Kind between the same nodes, not a move) is folded into it, so a quiet
// cluster does not push the moves out. Not safe for concurrent use.
type History struct {
	size    int
	entries []Entry // oldest first
}

// NewHistory returns a History of at most size entries (DefaultHistory
// when size ≤ 0).
func NewHistory(size int) *History {
	if size <= 0 {
		size = DefaultHistory
	}
	return &History{size: size}
}

// Add records e.
func (h *History) Add(e Entry) {
	if n := len(h.entries); n > 0 {
		last := &h.entries[n-1]
		if folds(*last, e) {
			first, count := last.First, last.Count
			*last = e
			last.First, last.Count = first, count+e.Count
			return
		}
	}
	if len(h.entries) == h.size {
		copy(h.entries, h.entries[1:])
		h.entries = h.entries[:len(h.entries)-1]
	}
	h.entries = append(h.entries, e)
}

// folds says whether e repeats last.
func folds(last, e Entry) bool {
	switch e.Kind {
	case KindMove, KindMoved, KindFailed:
		return false
	}
	return last.Kind == e.Kind && last.From == e.From && last.To == e.To && last.Proc == e.Proc
}

// Entries returns a copy of the entries, oldest first.
func (h *History) Entries() []Entry { return append([]Entry(nil), h.entries...) }
