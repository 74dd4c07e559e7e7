// Package history is the record format of the hammer (the dlmd load
// client the lab e2e test runs on every node) and the checker that proves
// mutual exclusion from the merged records of every node.
//
// Each EX holder of a resource reads the value block, adds one to the
// counter kept in it, notes itself as the writer and writes it back when it
// unlocks; it logs one Record per critical section (its "log"). The
// checker puts the records of a resource in time order and requires:
//
//   - no two critical sections overlap: the interval between the grant and
//     the unlock request, read from CLOCK_MONOTONIC, which every node of
//     the lab shares (they are containers on one kernel);
//   - while the value block is valid it names the previous holder and
//     carries its count: no increment is lost, none is seen twice;
//   - it is never invalid before the kill (only a PW or EX holder's death
//     makes it so); after that the holder rebuilds it from its own log.
package history

import (
	"encoding/binary"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/client/dlm"
)

// Kinds of records.
const (
	KindStart = "start" // the hammer runs; Mono is its clock then
	KindCS    = "cs"    // one critical section
	KindError = "err"   // a failed request: the hammer's client stopped
	KindDone  = "done"  // a client finished; Count critical sections
)

// ID names one critical section: the node index the test gave the hammer,
// the client on that node, and the client's sequence number (from 1). The
// zero ID is the value block of a resource nobody wrote yet.
type ID struct {
	Node   uint16 `json:"n"`
	Client uint16 `json:"c"`
	Seq    uint64 `json:"s"`
}

func (id ID) String() string { return fmt.Sprintf("%d/%d/%d", id.Node, id.Client, id.Seq) }

// Record is one line of a hammer's output (JSON).
type Record struct {
	Kind string `json:"k"`
	// ID is the critical section (KindCS) or the node and client.
	ID  ID     `json:"id"`
	Res string `json:"res,omitempty"`
	// Read is the counter and ReadBy its writer as the value block had
	// them at the grant; Valid is the value block's valid flag then.
	Read   uint64 `json:"read,omitempty"`
	ReadBy ID     `json:"by,omitzero"`
	Valid  bool   `json:"valid,omitempty"`
	// Wrote is the counter this holder writes at its unlock: Read+1 when
	// Valid, else one more than the largest value its hammer knows.
	Wrote uint64 `json:"wrote,omitempty"`
	// T0 is CLOCK_MONOTONIC (ns) just after the grant, T1 just before the
	// unlock request: the lock is held throughout.
	T0 int64 `json:"t0,omitempty"`
	T1 int64 `json:"t1,omitempty"`
	// Mono is CLOCK_MONOTONIC at start (KindStart).
	Mono  int64  `json:"mono,omitempty"`
	Count int    `json:"count,omitempty"`
	Msg   string `json:"msg,omitempty"`
}

// Encode lays a counter and its writer out in a value block: the counter
// (8 bytes), the writer's node (2), client (2) and sequence number (8),
// little endian; the rest is zero.
func Encode(counter uint64, writer ID) dlm.Value {
	var v dlm.Value
	binary.LittleEndian.PutUint64(v[0:8], counter)
	binary.LittleEndian.PutUint16(v[8:10], writer.Node)
	binary.LittleEndian.PutUint16(v[10:12], writer.Client)
	binary.LittleEndian.PutUint64(v[12:20], writer.Seq)
	return v
}

// Decode is the inverse of Encode.
func Decode(v dlm.Value) (counter uint64, writer ID) {
	return binary.LittleEndian.Uint64(v[0:8]), ID{
		Node:   binary.LittleEndian.Uint16(v[8:10]),
		Client: binary.LittleEndian.Uint16(v[10:12]),
		Seq:    binary.LittleEndian.Uint64(v[12:20]),
	}
}

// Stats sum up a resource's history.
type Stats struct {
	Sections int // critical sections
	Invalid  int // of which read a value block that was not valid
	Last     uint64
}

// maxReported bounds the violations Check lists.
const maxReported = 30

// Check returns the violations in the critical sections recs (KindCS
// records of every node, in any order; other kinds are ignored). Before
// killedAt (CLOCK_MONOTONIC, ns) no value block may be invalid.
func Check(recs []Record, killedAt int64) ([]string, map[string]Stats) {
	byRes := map[string][]Record{}
	for _, r := range recs {
		if r.Kind == KindCS {
			byRes[r.Res] = append(byRes[r.Res], r)
		}
	}
	var bad []string
	report := func(format string, args ...any) {
		if len(bad) < maxReported {
			bad = append(bad, fmt.Sprintf(format, args...))
		} else if len(bad) == maxReported {
			bad = append(bad, "... (more)")
		}
	}
	stats := map[string]Stats{}
	names := make([]string, 0, len(byRes))
	for name := range byRes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rs := byRes[name]
		sort.SliceStable(rs, func(i, j int) bool {
			if rs[i].T0 != rs[j].T0 {
				return rs[i].T0 < rs[j].T0
			}
			return rs[i].T1 < rs[j].T1
		})
		var st Stats
		ids := map[ID]bool{}
		readValid := map[ID]ID{} // writer -> the section that read it while valid
		var prev *Record
		var lastEnd *Record // the section that ended last so far
		for i := range rs {
			r := &rs[i]
			st.Sections++
			if ids[r.ID] {
				report("%s: critical section %s logged twice", name, r.ID)
			}
			ids[r.ID] = true
			if r.T1 < r.T0 {
				report("%s: %s ends (%d) before it starts (%d)", name, r.ID, r.T1, r.T0)
			}
			if lastEnd != nil && r.T0 <= lastEnd.T1 {
				report("%s: mutual exclusion violated: %s held EX from %d, %s still held it until %d",
					name, r.ID, r.T0, lastEnd.ID, lastEnd.T1)
			}
			if lastEnd == nil || r.T1 > lastEnd.T1 {
				lastEnd = r
			}
			if !r.Valid {
				st.Invalid++
				if r.T0 < killedAt {
					report("%s: %s read a value block marked not valid before any node was lost", name, r.ID)
				} else if st.Invalid > 1 {
					// The lost node's holder invalidates it once; the
					// reader rebuilds it, and no one else dies.
					report("%s: %s read a value block marked not valid again after the loss (a write was lost)", name, r.ID)
				}
			} else {
				wantCount, wantBy := uint64(0), ID{}
				if prev != nil {
					wantCount, wantBy = prev.Wrote, prev.ID
				}
				if r.Read != wantCount || r.ReadBy != wantBy {
					report("%s: %s read %d written by %s from a valid value block; the log says the previous holder %s wrote %d",
						name, r.ID, r.Read, r.ReadBy, wantBy, wantCount)
				}
				if other, seen := readValid[r.ReadBy]; seen {
					report("%s: the value %d written by %s was read while valid by both %s and %s", name, r.Read, r.ReadBy, other, r.ID)
				}
				readValid[r.ReadBy] = r.ID
				if r.Wrote != r.Read+1 {
					report("%s: %s read %d and wrote %d, not one more", name, r.ID, r.Read, r.Wrote)
				}
			}
			prev = r
			st.Last = r.Wrote
		}
		stats[name] = st
	}
	return bad, stats
}

// Mono is CLOCK_MONOTONIC in nanoseconds: one clock for the host and every
// container of the lab (they share the kernel, and systemd-nspawn makes no
// time namespace), unlike Go's per-process monotonic readings.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}
