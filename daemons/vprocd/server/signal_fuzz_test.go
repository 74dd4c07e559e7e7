package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// FuzzSignalRequests decodes the kill and renice messages of callers and
// peers, and the origin part of a peer's exec Start, and checks them as
// the services do: no input may panic, and what passes is within bounds.
func FuzzSignalRequests(f *testing.F) {
	for _, m := range []proto.Message{
		&vprocpeerv1.PeerKill{Origin: 1, CallerUid: 1000, Request: &vprocv1.KillRequest{Cpid: 8389842, Group: true, Signal: 15}},
		&vprocpeerv1.PeerKill{Origin: 1, Request: &vprocv1.KillRequest{Cpid: -1, Signal: 99}},
		&vprocpeerv1.Start{Origin: 1, Cpgid: 4194305, Tty: true},
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
		var s vprocpeerv1.Start
		if proto.Unmarshal(raw, &s) == nil {
			if o := startOrigin(&s); o.cpgid != 0 && (!o.cpgid.Valid() || o.cpgid.Node() != s.Origin) {
				t.Fatalf("origin %+v from %v", o, &s)
			}
		}
	})
}
