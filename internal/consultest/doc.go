// Package consultest starts real multi-agent Consul clusters on loopback
// addresses for tests and benchmarks. It never mocks Consul.
//
// Every agent of a cluster gets its own loopback IP in a randomly chosen
// 127.A.B.0/24 network (Linux routes all of 127.0.0.0/8 to lo), so each agent
// listens on Consul's standard ports (server RPC 8300, Serf LAN 8301, Serf WAN
// 8302 on servers, HTTP 8500) on its own IP; DNS and gRPC are disabled. Agents
// are named node1..nodeN: the servers first, then the clients.
//
// A test starts a cluster with [Start], which stops every agent (and its
// process group) in t.Cleanup and prints the tail of every agent's log when the
// test failed:
//
//	c := consultest.Start(t, consultest.Options{Servers: 3, Clients: 1})
//	kv := c.Agents[3].Client().KV()
//	c.Agents[1].Kill() // SIGKILL: a power loss of node2
//
// Code outside package testing (benchmarks, tools) uses [StartCluster] and
// must call [Cluster.Stop] itself.
//
// The consul binary is found by [Binary]: env CONSUL_BIN, else the pinned
// build in ~/.cache/openssi/consul-1.20.6/consul (`make consul`), else
// `consul` on PATH.
package consultest
