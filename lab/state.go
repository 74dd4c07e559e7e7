package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is what a lab made, persisted in <Dir>/state.json after every
// change so that Down can undo it even when the lab command crashed.
type State struct {
	// Bridge is the host bridge the nodes are plugged into.
	Bridge string `json:"bridge"`
	// Subnet is the lab's /24 prefix, e.g. "10.77.0".
	Subnet string `json:"subnet"`
	// Dist is the dist/ directory bind-mounted into every node (the
	// repository the nodes install and upgrade from).
	Dist string `json:"dist"`
	// Consul holds the lab's Consul secrets: this file is root's only.
	Consul *ConsulSecrets `json:"consul,omitempty"`
	// Nodes are node1..nodeN.
	Nodes []NodeState `json:"nodes"`
	// CRIU is set when the nodes have CRIU (Options.CRIU) and boot as it
	// needs.
	CRIU bool `json:"criu,omitempty"`
	// Bare is set for a lab brought up with UpBare: nodes with sshd and
	// Python but neither Consul nor openssi, for an Ansible rollout.
	Bare bool `json:"bare,omitempty"`
	// SSH is the key pair and known_hosts file of a bare lab.
	SSH *SSHFiles `json:"ssh,omitempty"`
	// ServerPID is the process serving the repository, Consul and the
	// Debian mirror to a bare lab's nodes (`lab serve` started by
	// `lab up --bare`); 0 when none was started by the lab command.
	ServerPID int `json:"server_pid,omitempty"`
}

// SSHFiles are the paths of a bare lab's SSH files on the host.
type SSHFiles struct {
	// Key is the private key that logs in as root on every node; Key +
	// ".pub" is in each node's /root/.ssh/authorized_keys.
	Key string `json:"key"`
	// KnownHosts holds every node's own host key, by address and name.
	KnownHosts string `json:"known_hosts"`
}

// NodeState is one node.
type NodeState struct {
	Name    string `json:"name"`    // hostname and Consul node name: node1..
	Machine string `json:"machine"` // nspawn machine name: lab-node1..
	IP      string `json:"ip"`
	Server  bool   `json:"server"`  // a Consul server
	Dir     string `json:"dir"`     // upper, work and root (the overlay mount) live here
	PID     int    `json:"pid"`     // systemd-nspawn's pid while booted
	Mounted bool   `json:"mounted"` // the overlay is mounted
	// Tokens are the SecretIDs of the node's Consul ACL tokens.
	Tokens NodeTokens `json:"tokens"`
}

// Root is the node's root directory (the overlay mount point).
func (n NodeState) Root() string { return filepath.Join(n.Dir, "root") }

// Veth is the host side of the node's link ("vb-" + machine name).
func (n NodeState) Veth() string { return "vb-" + n.Machine }

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// ErrNoLab is returned when no lab state exists.
var ErrNoLab = errors.New("lab: no lab is up")

// LoadState reads the state file.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoLab
	}
	if err != nil {
		return nil, fmt.Errorf("lab: read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab: %s is corrupt (%v): run `lab down` to clean up by name", statePath(dir), err)
	}
	return &s, nil
}

// save writes the state atomically, readable by root only: it holds the
// Consul management token.
func (s *State) save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir))
}

// Node returns the node called name ("node2") or numbered n ("2").
func (s *State) Node(name string) (*NodeState, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name || s.Nodes[i].Name == "node"+name {
			return &s.Nodes[i], nil
		}
	}
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	return nil, fmt.Errorf("lab: no node %q (the lab has %v)", name, names)
}
