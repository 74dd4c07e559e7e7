#!/usr/bin/env bash
# Install the Debian/Ubuntu packages a make target needs, when missing.
#
#   build/deps.sh [--update-lists] GROUP...
#
# GROUP is proto (make proto), lab (make lab), ansible (the checks of
# ansible/ and vagrant/), criu (building CRIU from source; build/criu/build.sh
# asks for it only when it has to build) or test (make test: all of them but
# criu). Only the missing packages are installed, and apt-get update runs
# only before installing, or with --update-lists: the package checks ask apt
# whether a name collides with a Debian package, so they need current lists
# even when nothing is missing (lists updated by this script in the last hour
# count as current). Either needs root; when there is nothing to do the
# script prints nothing and needs no root.
set -euo pipefail

# protobuf-compiler: make proto regenerates proto/ (make check-protos).
PROTO=(protobuf-compiler)
# git, ca-certificates: the version stamped into the packages, and the Go
#   module proxy over https (the pinned Consul is built from it).
# debootstrap, systemd-container: the cached bookworm rootfs and the nspawn
#   nodes of the lab (and of the package boot test and the e2e tests).
# gnupg, apt-utils, createrepo-c, rpm, fakeroot: the signed apt and yum
#   repositories the lab nodes install openssi from.
# iproute2, util-linux: the lab's bridge and veths, nsenter.
# openssh-client: a bare lab's key pair and host keys (ssh-keygen) and the
#   check that its nodes accept the key (ssh).
LAB=(git ca-certificates debootstrap systemd-container
	gnupg apt-utils createrepo-c rpm fakeroot
	iproute2 util-linux openssh-client)
# ansible-core, ansible-lint, yamllint, vagrant: the lint checks of ansible/
#   and vagrant/ (ansible-lint's production profile, yamllint,
#   ansible-playbook --syntax-check, vagrant validate); openssl makes the
#   Consul CA when the e2e test rolls the playbooks out.
ANSIBLE=(ansible-core ansible-lint yamllint vagrant openssl)
# make; lintian, rpmlint, dpkg-dev, debhelper: checking the packages and
#   building debian/ (make check-packages).
# strace: vprocd's ssi strace tests trace real processes with it.
# gcc, make, pkg-config, curl, xz-utils and the -dev packages `make criu` of
#   CRIU's source needs (its Makefile.packages; the optional libbsd, gnutls
#   and nftables are left out): build/criu/build.sh.
CRIU=(gcc make pkg-config curl ca-certificates xz-utils
	libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libnl-3-dev libcap-dev libnet1-dev uuid-dev)
TEST=("${PROTO[@]}" "${LAB[@]}" make lintian rpmlint dpkg-dev debhelper strace "${ANSIBLE[@]}")

usage() {
	echo "usage: build/deps.sh [--update-lists] proto|lab|ansible|criu|test..." >&2
	exit 2
}

update_lists=false
want=()
for arg in "$@"; do
	case "${arg}" in
	--update-lists) update_lists=true ;;
	proto) want+=("${PROTO[@]}") ;;
	lab) want+=("${LAB[@]}") ;;
	ansible) want+=("${ANSIBLE[@]}") ;;
	criu) want+=("${CRIU[@]}") ;;
	test) want+=("${TEST[@]}") ;;
	*) usage ;;
	esac
done
[ "${#want[@]}" -gt 0 ] || usage

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	echo "build/deps.sh: no apt-get/dpkg-query (not Debian or Ubuntu): install these by hand: ${want[*]}" >&2
	exit 1
fi

missing=()
for p in "${want[@]}"; do
	# Captured, not piped into grep -q: see build/consul/build.sh.
	status="$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null || true)"
	if [ "${status}" != "install ok installed" ] && [[ " ${missing[*]} " != *" ${p} "* ]]; then
		missing+=("${p}")
	fi
done

stamp="${OPENSSI_CACHE:-${HOME}/.cache/openssi}/apt-lists-updated"
if "${update_lists}" && [ -n "$(find "${stamp}" -mmin -60 2>/dev/null)" ]; then
	update_lists=false
fi
if [ "${#missing[@]}" -eq 0 ] && ! "${update_lists}"; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "build/deps.sh: needs root to install ${missing[*]}: run make as root (sudo make ...) or apt-get install them" >&2
	else
		echo "build/deps.sh: needs root to update the apt lists the package checks read: run make as root (sudo make ...)" >&2
	fi
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps: apt-get update" >&2
apt-get update -qq
mkdir -p "$(dirname "${stamp}")"
touch "${stamp}"
if [ "${#missing[@]}" -gt 0 ]; then
	echo "deps: apt-get install ${missing[*]}" >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
