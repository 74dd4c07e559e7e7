// Package consultest starts real multi-agent Consul clusters (see
// internal/consulagent) for tests, and decides what a test does when there is
// no consul binary. It never mocks Consul.
//
// A test starts a cluster with [Start], which stops every agent (and its
// process group) in t.Cleanup and prints the tail of every agent's log when the
// test failed:
//
//	c := consultest.Start(t, consulagent.Options{Servers: 3, Clients: 1})
//	kv := c.Agents[3].Client().KV()
//	c.Agents[1].Kill() // SIGKILL: a power loss of node2
//
// Without a consul binary ([consulagent.Binary]) a test that needs one is
// skipped with a message saying how to get it (`make consul` or CONSUL_BIN),
// so `go test ./...` passes on a machine without Consul; `make unit` hides the
// binary on purpose (OPENSSI_NO_CONSUL). Under CI (env CI=true) a missing
// binary is a failure instead, so CI cannot skip the integration tests.
package consultest
