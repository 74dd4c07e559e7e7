// Package rpc is the inter-node RPC layer of OpenSSI: gRPC over mutual TLS
// between the daemons of different nodes, with the peer's identity checked
// on both sides, a deadline on every call, keepalive pings on every
// connection (a silent peer fails the calls and streams on it; see
// [DefaultKeepalive]), and peer discovery through the Consul catalog.
//
// # Trust model
//
// Every daemon has an identity: the Consul service name openssi-<daemon>
// (openssi-clmsd, openssi-dlmd, ...). The identity is carried in the leaf
// certificate as a SPIFFE ID URI SAN, the way Consul Connect issues it:
//
//	spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/openssi-<daemon>
//
// A connection is accepted only when both ends present a certificate that
//
//   - chains to the current trust roots of the cluster (verified here with
//     x509 against the roots the [Source] holds right now; Go's default
//     hostname verification is replaced, never skipped), and
//   - carries a SPIFFE ID of this trust domain (when the source knows one)
//     for a service whose name starts with "openssi-".
//
// So: any OpenSSI daemon of the cluster may call any other OpenSSI daemon;
// nothing else may (not a Connect certificate of another service such as
// "web", not a certificate from another CA, not a client without a
// certificate). A client additionally names the service it wants to reach
// ([Dial]'s wantService): a clmsd call is answered only by a peer holding an
// openssi-clmsd identity, so a compromised dlmd cannot impersonate clmsd to
// its clients. Servers that restrict callers further (for example "only
// clmsd may push a membership epoch") check [PeerService] in the handler.
//
// Certificates come from a [Source]:
//
//   - [ConnectSource] (cluster.tls.source: connect, the default) asks the
//     local Consul agent for the daemon's leaf certificate and the CA roots
//     of Consul's built-in CA, and keeps both fresh with blocking queries,
//     so leaf renewal and CA root rotation need no restart.
//   - [FileSource] (cluster.tls.source: files) reads PEM files and reloads
//     them when they change. Its certificates must carry the same SPIFFE
//     IDs; a certificate may carry several (one per daemon of the node).
//
// # Discovery
//
// [Register] adds the daemon to the local agent's catalog as service
// openssi-<daemon> with Meta["node"] set to its node number and a TCP
// health check; [Lookup] and [Peers] find healthy instances by node number.
package rpc
