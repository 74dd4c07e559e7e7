// Package server is initfailover's shell: the Elector drives the pure
// election core (package election) with dlmd (the init lock, through
// client/dlm) and systemd (the units, through the Systemd interface, D-Bus
// in production); Server serves `ssi init` and `ssi service` on the local
// socket and carries them to the other nodes' initfailover over mutual
// TLS, believing a peer only as the node its certificate names.
package server
