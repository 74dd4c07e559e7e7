#!/usr/bin/env bash
# Provide the pinned CRIU binary and print its path.
#
# Process migration needs CRIU 4.2 or later: bookworm's 3.17 fails
# `criu check` on current kernels, trixie's 4.1.1 hangs in dump, and kernels
# from 6.16 on need 4.2's socket-option fix. The one on PATH is used when its
# version matches; otherwise CRIU is built once from Debian's source package
# (the upstream release tarball Debian ships as its .orig, checked against the
# SHA-256 pinned here) into a cache under $HOME/.cache/openssi. Building
# installs the -dev packages `make criu` needs (build/deps.sh criu; root) and
# takes about a minute on 2 cores. The binary links those libraries'
# runtime packages (libprotobuf-c1, libnl-3-200, libnet1, libuuid1).
#
# With --check it only looks: it prints the path of a pinned binary, or exits
# with status 1 when there is none, and never builds.
set -euo pipefail

check_only=false
case "${1:-}" in
--check) check_only=true ;;
"") ;;
*) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

CRIU_VERSION=4.2.1
# From criu_4.2.1-1.dsc (Debian sid), Checksums-Sha256 of the orig tarball.
CRIU_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_URL="${CRIU_MIRROR:-https://deb.debian.org/debian}/pool/main/c/criu/criu_${CRIU_VERSION}.orig.tar.xz"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${OPENSSI_CACHE:-${HOME}/.cache/openssi}/criu-${CRIU_VERSION}"
bin="${cache}/criu"

# is_pinned BINARY: whether BINARY runs and reports the pinned version
# ("Version: 4.2.1" on its first line). Captured, not piped into head: see
# build/consul/build.sh. A binary whose shared libraries went away fails here
# and is rebuilt.
is_pinned() {
	local out
	out="$("$1" --version 2>/dev/null)" || return 1
	[ "${out%%$'\n'*}" = "Version: ${CRIU_VERSION}" ]
}

if p="$(command -v criu 2>/dev/null)" && is_pinned "${p}"; then
	echo "${p}"
	exit 0
fi
if [ -x "${bin}" ] && is_pinned "${bin}"; then
	echo "${bin}"
	exit 0
fi
if "${check_only}"; then
	exit 1
fi

echo "criu: building ${CRIU_VERSION} from Debian's source package (about a minute on 2 cores, once)" >&2
"${here}/../deps.sh" criu >&2
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cd "${work}"
curl -fsSL --retry 3 -o criu.tar.xz "${CRIU_URL}" >&2
if ! echo "${CRIU_SHA256}  criu.tar.xz" | sha256sum -c --quiet - >&2; then
	echo "criu: ${CRIU_URL} does not have the pinned SHA-256 ${CRIU_SHA256}" >&2
	exit 1
fi
tar -xJf criu.tar.xz
cd "criu-${CRIU_VERSION}"
# NO_GNUTLS: the images travel over vprocd's own peer link, never through
# CRIU's TLS page server, so the build does not depend on whether gnutls
# happens to be installed.
make -j"$(nproc)" criu NO_GNUTLS=1 >&2
mkdir -p "${cache}"
cp criu/criu "${bin}.tmp"
mv "${bin}.tmp" "${bin}"
if ! is_pinned "${bin}"; then
	echo "criu: the built ${bin} does not report version ${CRIU_VERSION}" >&2
	exit 1
fi
echo "criu: built ${bin}" >&2
echo "${bin}"
