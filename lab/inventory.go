package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"runtime"

	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/internal/consulagent"
)

// The inventory groups the Ansible roles (ansible/) use, the same in the
// lab and in vagrant/: every node is in openssi, and in exactly one of
// consul_servers (the first three) and consul_clients.
const (
	GroupOpenSSI       = "openssi"
	GroupConsulServers = "consul_servers"
	GroupConsulClients = "consul_clients"
)

// ServePort is the TCP port on the bridge address where a bare lab's
// server (Serve) answers the nodes.
const ServePort = 8077

// Served are the URLs at which a bare lab's server hands the nodes what
// the roles install: the signed OpenSSI repository, the pinned Consul and
// a Debian mirror.
type Served struct {
	// Base is http://<bridge address>:<ServePort>.
	Base string
	// AptRepo is the signed apt repository (suite "stable", component
	// "main"); YumRepo the yum one.
	AptRepo, YumRepo string
	// Key is the repository's public key, binary (for apt's signed-by);
	// KeyASC the same armored (for yum's gpgkey).
	Key, KeyASC string
	// ConsulBinary is the pinned consul binary itself, ConsulZip the same
	// in HashiCorp's release zip, ConsulSums the release's SHA256SUMS
	// file (of the zip).
	ConsulBinary, ConsulZip, ConsulSums string
	// Debian and DebianSecurity are the Debian archive and its security
	// archive, proxied for the nodes (they have no other network).
	Debian, DebianSecurity string
}

// ServedAt returns the URLs of the server of a lab on subnet.
func ServedAt(subnet string) Served {
	base := fmt.Sprintf("http://%s.1:%d", subnet, ServePort)
	zip := consulZipName()
	return Served{
		Base:           base,
		AptRepo:        base + "/openssi/apt",
		YumRepo:        base + "/openssi/yum",
		Key:            base + "/openssi/openssi-archive-keyring.gpg",
		KeyASC:         base + "/openssi/openssi-archive-keyring.asc",
		ConsulBinary:   base + "/consul/consul",
		ConsulZip:      base + "/consul/" + zip,
		ConsulSums:     base + "/consul/" + ConsulSumsName(),
		Debian:         base + "/debian",
		DebianSecurity: base + "/debian-security",
	}
}

// consulZipName is the file name of the pinned release's zip as HashiCorp
// names it.
func consulZipName() string {
	return fmt.Sprintf("consul_%s_linux_%s.zip", consulagent.PinnedVersion, runtime.GOARCH)
}

// ConsulSumsName is the file name of the pinned release's SHA256SUMS.
func ConsulSumsName() string {
	return fmt.Sprintf("consul_%s_SHA256SUMS", consulagent.PinnedVersion)
}

// inventoryFile is the YAML inventory: all.vars, then the groups.
type inventoryFile struct {
	All inventoryAll `yaml:"all"`
}

type inventoryAll struct {
	Vars     map[string]any            `yaml:"vars"`
	Children map[string]inventoryGroup `yaml:"children"`
}

type inventoryGroup struct {
	Hosts map[string]map[string]any `yaml:"hosts"`
}

// Inventory returns the Ansible inventory of the bare lab (the pure
// Inventory), with the checksum of the Consul binary it serves.
func (l *Lab) Inventory(extra map[string]any) ([]byte, error) {
	b, err := os.ReadFile(l.opts.Consul)
	if err != nil {
		return nil, fmt.Errorf("lab: inventory: %w", err)
	}
	sum := sha256.Sum256(b)
	vars := map[string]any{"consul_binary_checksum": "sha256:" + hex.EncodeToString(sum[:])}
	for k, v := range extra {
		vars[k] = v
	}
	return Inventory(l.State(), vars)
}

// Inventory returns the Ansible inventory (YAML) of a bare lab: every
// node in the groups the roles use, reached over SSH as root with the
// lab's key and its known host keys, and the variables that point the
// roles at what the lab serves (Served) instead of the Internet. Nodes
// added later (AddBare) are Consul clients. extra variables are added to
// all.vars (and override the lab's).
func Inventory(s *State, extra map[string]any) ([]byte, error) {
	if s == nil {
		return nil, ErrNoLab
	}
	if !s.Bare || s.SSH == nil {
		return nil, fmt.Errorf("lab: the lab is not bare: only `lab up --bare` makes nodes for an Ansible rollout")
	}
	sv := ServedAt(s.Subnet)
	vars := map[string]any{
		"ansible_user":                 "root",
		"ansible_python_interpreter":   "/usr/bin/python3",
		"ansible_ssh_private_key_file": s.SSH.Key,
		"ansible_ssh_common_args": fmt.Sprintf("-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o PasswordAuthentication=no",
			s.SSH.KnownHosts),
		// The signed OpenSSI repository and its key (role openssi).
		"openssi_apt_repo_url":     sv.AptRepo,
		"openssi_yum_repo_url":     sv.YumRepo,
		"openssi_repo_key_url":     sv.Key,
		"openssi_repo_key_asc_url": sv.KeyASC,
		// The pinned Consul from the lab instead of HashiCorp's repository
		// (role consul).
		"consul_install_method": "url",
		"consul_binary_url":     sv.ConsulBinary,
		"consul_version":        consulagent.PinnedVersion,
		// The nodes reach no NTP server, only each other (role timesync).
		"timesync_pools":   []string{},
		"timesync_servers": []string{},
	}
	for k, v := range extra {
		vars[k] = v
	}
	inv := inventoryFile{All: inventoryAll{Vars: vars, Children: map[string]inventoryGroup{
		GroupOpenSSI:       {Hosts: map[string]map[string]any{}},
		GroupConsulServers: {Hosts: map[string]map[string]any{}},
		GroupConsulClients: {Hosts: map[string]map[string]any{}},
	}}}
	for _, n := range s.Nodes {
		// Host variables once, in openssi; the Consul groups only name
		// the host.
		inv.All.Children[GroupOpenSSI].Hosts[n.Name] = map[string]any{"ansible_host": n.IP}
		g := GroupConsulClients
		if n.Server {
			g = GroupConsulServers
		}
		inv.All.Children[g].Hosts[n.Name] = nil
	}
	b, err := yaml.Marshal(inv)
	if err != nil {
		return nil, fmt.Errorf("lab: inventory: %w", err)
	}
	header := fmt.Sprintf("# Ansible inventory of the bare OpenSSI lab %s (bin/lab inventory).\n# Use: ansible-playbook -i <this file> ansible/site.yml\n", path.Base(s.Bridge))
	return append([]byte(header), b...), nil
}
