// Package rpc is the inter-node RPC layer of OpenSSI: gRPC over mutual TLS
// between the daemons of different nodes, with the peer's identity checked
// on both sides, a deadline on every call, keepalive pings on every
// connection (a silent peer fails the calls and streams on it; see
// [DefaultKeepalive]), and peer discovery through the Consul catalog.
//
// # Trust model
//
// Every daemon has an identity: its Consul service name openssi-<daemon>
// (openssi-clmsd, openssi-dlmd, ...) on the node it runs on, written
// "openssi-<daemon>.<Consul node name>" ([Identity], [NodeIdentity]). The
// identity is carried in the leaf certificate as a SPIFFE ID URI SAN, the
// way Consul Connect issues it:
//
//	spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/openssi-<daemon>.<node>
//
// Only the node's own Consul ACL token may obtain that leaf (its policy
// grants `service "openssi-<daemon>.<node>" write`), so the certificate is
// the node's credential.
//
// A connection is accepted only when both ends present a certificate that
//
//   - chains to the current trust roots of the cluster (verified here with
//     x509 against the roots the [Source] holds right now; Go's default
//     hostname verification is replaced, never skipped), and
//   - carries a SPIFFE ID of this trust domain (when the source knows one)
//     naming an OpenSSI daemon on a node, all its IDs the same node. A
//     certificate naming only the service ("openssi-dlmd", as before
//     identities named the node) names no node and is refused.
//
// So: any OpenSSI daemon of the cluster may call any other OpenSSI daemon;
// nothing else may (not a Connect certificate of another service such as
// "web", not a certificate from another CA, not a client without a
// certificate). A client additionally names what it wants to reach
// ([Dial]'s wantService): a service, so that a clmsd call is answered only
// by a peer holding an openssi-clmsd identity and a compromised dlmd
// cannot impersonate clmsd to its clients, or an identity, so that the
// call to node 3's dlmd is answered only by the dlmd of the node that
// holds number 3. Servers check in the handler what the caller's
// certificate names ([PeerIdentity]): a daemon that believes a node number
// a peer claims first checks that the number is held by the node the
// certificate names (dlmd and clmsd take the number's holder from its
// claim in Consul KV, which only that node's token may write).
//
// Certificates come from a [Source]:
//
//   - [ConnectSource] (cluster.tls.source: connect, the default) asks the
//     local Consul agent for its node name, then for the leaf certificate
//     of the daemon's identity on that node and the CA roots
//     of Consul's built-in CA, and keeps both fresh with blocking queries,
//     so leaf renewal and CA root rotation need no restart.
//
//   - [FileSource] (cluster.tls.source: files) reads PEM files and reloads
//     them when they change. Its certificates must carry the same per-node
//     SPIFFE IDs; a certificate may carry several (one per daemon of the
//     node, all of that node).
//
//   - [PinnedSource], for the daemons that run as root (vprocd,
//     initfailover): the Consul agent hands any cached Connect leaf, key
//     included, to whoever opens its socket, which user openssi (clmsd,
//     dlmd) can, so a Connect leaf must not make anyone root elsewhere.
//     Such a daemon makes its own key at start, presents a self-signed
//     certificate of it with its SPIFFE ID, and publishes the key's pin in
//     Consul KV (openssi/rootkeys/<node>/<service>, package
//     internal/rootkey) with the node's root token, which the daemons'
//     token cannot match. It accepts a peer only when the key the peer
//     proves in the handshake is the one pinned for the node and service
//     its certificate names; the chain does not count.
//
// # Discovery
//
// [Register] adds the daemon to the local agent's catalog as service
// openssi-<daemon> with Meta["node"] set to its node number and a TCP
// health check; [Lookup] and [Peers] find healthy instances by node number.
package rpc
