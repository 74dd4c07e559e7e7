// Package consul is the Consul plumbing every OpenSSI daemon uses: an API
// client built from the daemon's configuration ([NewClient]), sessions tied
// to the node's serfHealth check ([CreateSession], [FindSession],
// [EnsureSession]), the local agent and its catalog ([Self], [Members],
// [RegisterService], [ServiceInstances], [CALeaf]), blocking-query loops
// with backoff and an interrupt for local events ([Watch]) and typed JSON
// values under the "openssi/" key prefix ([KV]).
//
// Every call takes a context and passes it to the HTTP request, so a
// daemon can bound each one (a drain on SIGTERM, say); daemons call Consul
// only through this package.
//
// A daemon's claims (its node number, the locks it masters, the services it
// runs) are KV keys acquired by a session that is tied to nothing but the
// node's serfHealth check and has no TTL: the claims live exactly as long as
// the node is a live Serf member. A SIGKILLed or cut-off node fails its
// gossip probes, the servers mark its serfHealth critical, Consul
// invalidates its sessions, and the claims are released (or deleted) and
// can be taken over by the survivors at once (see [DefaultLockDelay]). A
// daemon that merely restarts adopts its node's existing session with
// [FindSession] instead of creating a new one, so a daemon crash does not
// look like a node failure.
package consul
