// Package lab runs a real multi-node OpenSSI cluster on one Linux machine:
// each node is a systemd-nspawn container booted from the cached minimal
// bookworm rootfs (internal/rootfs) with real systemd as PID 1, its own
// hostname, network namespace and disk (an overlay over the shared rootfs,
// kept across kill and start), joined to a host bridge on a private subnet
// that exists only inside this machine. Every node runs the pinned Consul
// (the first three are servers) and openssi installed with apt-get from the
// local signed repository built from the working tree.
//
// A bare lab (UpBare, `lab up --bare`) is where an Ansible rollout starts:
// its nodes boot with sshd and Python only, accept root with a key the lab
// makes, and reach nothing but the lab's server (Serve) on the bridge
// address, which hands them the signed repository, the pinned Consul and a
// proxy of the Debian archive. Inventory writes the nodes into the groups
// the roles under ansible/ use (openssi, consul_servers, consul_clients);
// RunPlaybook runs a playbook and reads its recap. AddBare boots one more
// node for add-node.yml.
//
// The lab command (lab/cmd/lab, built to bin/lab) and the e2e tests
// (test/e2e) use this package, so they drive the same code.
//
// Everything the lab creates is named with the prefix "lab-" (machines,
// veth links) or "ssilab0" (the bridge) and recorded in a state file, so
// Down can remove it after a crash of the lab command itself.
package lab
