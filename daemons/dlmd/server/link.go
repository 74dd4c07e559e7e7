package server

import (
	"github.com/openssi/openssi/internal/peerlink"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// link is one direction of a reliable link between two dlmd (see
// PeerMessage and package peerlink).
type link = peerlink.Link[*dlmpeerv1.PeerMessage]

func newLink() *link { return peerlink.New[*dlmpeerv1.PeerMessage](peerCodec{}) }

// peerCodec is the link fields of a PeerMessage.
type peerCodec struct{}

func (peerCodec) Seq(m *dlmpeerv1.PeerMessage) uint64         { return m.GetSeq() }
func (peerCodec) SetSeq(m *dlmpeerv1.PeerMessage, seq uint64) { m.Seq = seq }
func (peerCodec) Ack(m *dlmpeerv1.PeerMessage) uint64         { return m.GetAck() }
func (peerCodec) AckOnly(n uint64) *dlmpeerv1.PeerMessage     { return &dlmpeerv1.PeerMessage{Ack: n} }
