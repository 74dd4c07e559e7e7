package lab

import (
	"context"
	"strings"
)

// RaftPeer is a line of `consul operator raft list-peers`.
type RaftPeer struct {
	Node, ID, State string
	Voter           bool
}

// ParseRaftPeers decodes `consul operator raft list-peers`.
func ParseRaftPeers(out string) []RaftPeer {
	var peers []RaftPeer
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "Node" {
			continue
		}
		peers = append(peers, RaftPeer{Node: f[0], ID: f[1], State: f[3], Voter: f[4] == "true"})
	}
	return peers
}

// LeaderOf is the node of the peer in state leader, or "".
func LeaderOf(peers []RaftPeer) string {
	for _, p := range peers {
		if p.State == "leader" {
			return p.Node
		}
	}
	return ""
}

// RaftPeers returns the Raft peers as the first running node that
// answers sees them.
func (l *Lab) RaftPeers(ctx context.Context) ([]RaftPeer, error) {
	var last error
	for _, n := range l.Running() {
		out, err := l.Exec(ctx, n, "consul", "operator", "raft", "list-peers")
		if err == nil {
			return ParseRaftPeers(out), nil
		}
		last = err
	}
	return nil, last
}

// Running returns the names of the nodes whose container runs.
func (l *Lab) Running() []string {
	var out []string
	for _, n := range l.State().Nodes {
		if n.PID != 0 {
			out = append(out, n.Name)
		}
	}
	return out
}
