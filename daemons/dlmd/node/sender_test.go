package node

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

func TestCheckSender(t *testing.T) {
	hello := func(n uint32) *dlmpeerv1.PeerMessage {
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Hello{Hello: &dlmpeerv1.PeerHello{Node: n}}}
	}
	marker := func(n uint32) *dlmpeerv1.PeerMessage {
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Node: n}}}
	}
	ack := func(n uint32) *dlmpeerv1.PeerMessage {
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_MarkerAck{MarkerAck: &dlmpeerv1.Marker{Node: n}}}
	}
	tests := []struct {
		name string
		m    *dlmpeerv1.PeerMessage
		ok   bool
	}{
		{"hello of the link's node", hello(3), true},
		{"hello of another node", hello(2), false},
		{"hello naming no node", hello(0), false},
		{"marker of the link's node", marker(3), true},
		{"marker of another node", marker(2), false},
		{"marker ack of the link's node", ack(3), true},
		{"marker ack of another node", ack(2), false},
		{"request: sender is the link's", &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{}}}, true},
		{"owner exit", &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: 7}}}, true},
		{"pure acknowledgement", &dlmpeerv1.PeerMessage{Ack: 4}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSender(3, tt.m)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckSender(3, %v) = %v, want ok %v", tt.m, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrWrongSender) {
				t.Fatalf("error %v does not wrap ErrWrongSender", err)
			}
		})
	}
}

// FuzzCheckSender decodes arbitrary bytes as a peer message (what a peer
// can send) and checks that CheckSender refuses it exactly when it names
// another sender than the link's node.
func FuzzCheckSender(f *testing.F) {
	for _, m := range []*dlmpeerv1.PeerMessage{
		{Msg: &dlmpeerv1.PeerMessage_Hello{Hello: &dlmpeerv1.PeerHello{Node: 2}}},
		{Seq: 1, Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Node: 3, Epoch: 1}}},
		{Seq: 2, Msg: &dlmpeerv1.PeerMessage_MarkerAck{MarkerAck: &dlmpeerv1.Marker{Node: 2}}},
		{Seq: 3, Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: 1}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint32(3), b)
	}
	f.Fuzz(func(t *testing.T, link uint32, b []byte) {
		var m dlmpeerv1.PeerMessage
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		err := CheckSender(link, &m)
		claimed, names := ClaimedSender(&m)
		if want := names && claimed != link; (err != nil) != want {
			t.Fatalf("CheckSender(%d, %v) = %v; names %v node %d", link, &m, err, names, claimed)
		}
	})
}
