// Package packaging builds OpenSSI's native packages from one list,
// internal/daemons.All, of the daemons' descriptions: the file tree (static
// stripped binaries, systemd units from one template and each daemon's
// needs and hardening profile, the configuration assembled from each
// daemon's section as a conffile, sysusers/tmpfiles entries, man pages, bash
// completion, copyright and changelog), the maintainer scripts shared by
// .deb and .rpm, the packages themselves with nfpm, and signed apt and yum
// repositories. The Makefile (packages, repo), debian/rules and
// rpm/openssi.spec drive it through packaging/cmd/openssi-pkg; see
// packaging/README.md.
package packaging
