// Package localapi serves and dials the node-local gRPC API of the OpenSSI
// daemons: gRPC on a Unix socket under /run/openssi, with the identity of
// the calling process taken from the kernel (SO_PEERCRED).
//
// # Trust model
//
// The socket is the boundary. [Listen] creates it mode 0660, owned by the
// daemon's user (root, or the daemons' system user openssi) and group
// openssi (cluster.socket_group), so only root, that user and members of
// that group can connect at all. Once connected, a caller is whoever the kernel
// says it is: [Credentials] reads the peer's pid, uid and gid with
// SO_PEERCRED during the (otherwise empty) transport handshake and hands
// them to every handler, where [CallerFrom] returns them. Nothing the client
// sends can change that identity.
//
// Handlers then decide the way the kernel would: [RequireRoot] for
// operations only root may do (node administration, acting for other
// users), [RequireUID] for operations on an object owned by a user (a user
// signals only its own processes; root acts for anyone).
//
// The daemon side:
//
//	ln, grouped, err := localapi.Listen("/run/openssi/clmsd.sock", "openssi")
//	if err != nil { return fmt.Errorf("local api: %w", err) }
//	if !grouped { log.Warn("group openssi does not exist; socket is root-only") }
//	srv := grpc.NewServer(grpc.Creds(localapi.Credentials()))
//	go srv.Serve(ln)
//
// The client side uses [Dial] and reports "daemon not running" when
// [IsUnavailable] says so.
package localapi
