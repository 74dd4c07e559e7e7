// Package consulagent runs real Consul agents: multi-agent clusters on
// loopback addresses for tests, benchmarks and tools, and the agent timing
// ([TunedSettings]) that the lab and the packaged configuration lay down too.
// It never mocks Consul and does not import package testing, so programs may
// link it; tests start clusters through internal/consultest.
//
// Every agent of a cluster gets its own loopback IP in a randomly chosen
// 127.A.B.0/24 network (Linux routes all of 127.0.0.0/8 to lo), so each agent
// listens on Consul's standard ports (server RPC 8300, Serf LAN 8301, Serf WAN
// 8302 on servers, HTTP 8500) on its own IP; DNS and gRPC are disabled. Agents
// are named node1..nodeN: the servers first, then the clients.
//
//	c, err := consulagent.StartCluster(dir, consulagent.Options{Servers: 3, Clients: 1})
//	...
//	defer c.Stop()
//	kv := c.Agents[3].Client().KV()
//	c.Agents[1].Kill() // SIGKILL: a power loss of node2
//
// The consul binary is found by [Binary]: env CONSUL_BIN, else the pinned
// build in ~/.cache/openssi/consul-1.20.6/consul (`make consul`), else
// `consul` on PATH; env OPENSSI_NO_CONSUL hides them all.
package consulagent
