package node

import (
	"errors"
	"fmt"

	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// ErrWrongSender is wrapped by CheckSender's error: a peer message names
// another node as its sender than the node whose link brought it.
var ErrWrongSender = errors.New("dlm: a peer message names another node as its sender")

// ClaimedSender returns the node a peer message names as its sender, when
// it names one: the node of a hello, of a recovery marker and of a
// marker's acknowledgement. The core takes every other message's sender
// from the link that brought it, never from a field.
func ClaimedSender(m *dlmpeerv1.PeerMessage) (node uint32, names bool) {
	switch x := m.GetMsg().(type) {
	case *dlmpeerv1.PeerMessage_Hello:
		return x.Hello.GetNode(), true
	case *dlmpeerv1.PeerMessage_Marker:
		return x.Marker.GetNode(), true
	case *dlmpeerv1.PeerMessage_MarkerAck:
		return x.MarkerAck.GetNode(), true
	}
	return 0, false
}

// CheckSender refuses a message that arrived on a link with node whose
// own sender field names another node. The link's node is the one the
// peer's certificate was checked against (the shell does it at the
// hello), so such a message is a peer speaking for another node.
func CheckSender(node uint32, m *dlmpeerv1.PeerMessage) error {
	if claimed, ok := ClaimedSender(m); ok && claimed != node {
		return fmt.Errorf("%w: node %d's link brought a %s naming node %d", ErrWrongSender, node, kindOf(m), claimed)
	}
	return nil
}

// kindOf names a message's kind for errors and logs.
func kindOf(m *dlmpeerv1.PeerMessage) string {
	switch m.GetMsg().(type) {
	case *dlmpeerv1.PeerMessage_Hello:
		return "hello"
	case *dlmpeerv1.PeerMessage_Marker:
		return "recovery marker"
	case *dlmpeerv1.PeerMessage_MarkerAck:
		return "marker acknowledgement"
	}
	return "message"
}
