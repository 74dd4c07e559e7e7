package server

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/pgroup"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// FuzzSignalRequests decodes the kill, renice and locate messages of
// callers and peers, and the origin part of a peer's exec Start, and checks them as
// the services do: no input may panic, and what passes is within bounds.
func FuzzSignalRequests(f *testing.F) {
	for _, m := range []proto.Message{
		&vprocpeerv1.PeerKill{Origin: 1, CallerUid: 1000, Request: &vprocv1.KillRequest{Cpid: 8389842, Group: true, Signal: 15}},
		&vprocpeerv1.PeerKill{Origin: 1, Request: &vprocv1.KillRequest{Cpid: -1, Signal: 99}},
		&vprocpeerv1.PeerKill{Origin: 1, CallerUid: 1000, Here: true, Exec: true, Request: &vprocv1.KillRequest{Cpid: 4194306, Signal: 2}},
		&vprocpeerv1.Start{Origin: 1, Cpgid: 4194305, Tty: true, Cpid: 4194306},
		&vprocpeerv1.PeerLocate{Origin: 1, Cpid: 4194306},
		&vprocpeerv1.PeerReport{From: 3, Origin: 1, Epoch: 7, Procs: []*vprocpeerv1.Proc{{Cpid: 4194306, Node: 3, Pid: 77, Pgid: 4194305, Uid: 1000, Tty: true}}},
	} {
		raw, _ := proto.Marshal(m)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var k vprocpeerv1.PeerKill
		if proto.Unmarshal(raw, &k) == nil {
			if tg, sig, err := checkKill(k.Request); err == nil && (!tg.ID.Valid() || sig < 0 || sig > maxSignal || int64(tg.ID) != k.Request.Cpid) {
				t.Fatalf("accepted %v", k.Request)
			}
		}
		var r vprocpeerv1.PeerRenice
		if proto.Unmarshal(raw, &r) == nil && r.Request != nil {
			if c, err := checkCPID(r.Request.Cpid); err == nil && (!c.Valid() || int64(c) != r.Request.Cpid) {
				t.Fatalf("accepted cpid %d", r.Request.Cpid)
			}
		}
		var l vprocpeerv1.PeerLocate
		if proto.Unmarshal(raw, &l) == nil {
			if c, err := checkCPID(l.Cpid); err == nil && (!c.Valid() || int64(c) != l.Cpid) {
				t.Fatalf("accepted locate cpid %d", l.Cpid)
			}
		}
		var s vprocpeerv1.Start
		if proto.Unmarshal(raw, &s) == nil {
			if o := startOrigin(&s); o.cpgid != 0 && (!o.cpgid.Valid() || o.cpgid.Node() != s.Origin) ||
				o.cpid != 0 && (!o.cpid.Valid() || o.cpid.Node() != s.Origin) {
				t.Fatalf("origin %+v from %v", o, &s)
			}
		}
		var rep vprocpeerv1.PeerReport
		if proto.Unmarshal(raw, &rep) == nil {
			// The core takes or refuses it (ErrInvalid), never panics.
			c := pgroup.New(pgroup.Config{Self: 2})
			c.Start(1, []uint32{1, 2, 3})
			r := pgroup.Report{From: rep.From, Origin: rep.Origin, Epoch: rep.Epoch}
			for _, p := range rep.Procs {
				r.Procs = append(r.Procs, procOf(p))
			}
			_ = c.Step(time.Unix(0, 0), r)
		}
	})
}
