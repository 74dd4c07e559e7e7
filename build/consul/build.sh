#!/usr/bin/env bash
# Provide the pinned Consul binary and print its path.
#
# The one on PATH is used when its version matches; otherwise Consul is built
# once from the Go module proxy into a cache under $HOME/.cache/openssi. Consul's
# own go.mod carries replace directives that only work inside its repository,
# so it is built through a tiny wrapper module with GOFLAGS=-mod=mod, which
# resolves its dependencies to their published versions.
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

CONSUL_VERSION="${CONSUL_VERSION:-1.20.6}"
cache="${OPENSSI_CACHE:-${HOME}/.cache/openssi}/consul-${CONSUL_VERSION}"
bin="${cache}/consul"

# is_pinned BINARY: whether BINARY reports the pinned version. The output is
# captured before its first line is read: in a pipeline `consul version | head
# -1` head may exit before consul has written everything, consul then dies of
# SIGPIPE and, under pipefail, the check fails (status 141) for a good binary.
is_pinned() {
	local out
	out="$("$1" version 2>/dev/null)" || return 1
	[ "${out%%$'\n'*}" = "Consul v${CONSUL_VERSION}" ]
}

if p="$(command -v consul 2>/dev/null)" && is_pinned "${p}"; then
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

echo "consul: building v${CONSUL_VERSION} from the Go module proxy (about 7 minutes on 2 cores, once)" >&2
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cd "${work}"
cat > go.mod <<MOD
module openssi.local/consulbuild

go 1.25
MOD
cat > tools.go <<'GO'
//go:build tools

package consulbuild

import _ "github.com/hashicorp/consul"
GO
export GOFLAGS=-mod=mod CGO_ENABLED=0
go get "github.com/hashicorp/consul@v${CONSUL_VERSION}" >&2
mkdir -p "${cache}"
go build -trimpath -o "${bin}.tmp" github.com/hashicorp/consul >&2
mv "${bin}.tmp" "${bin}"
echo "consul: built ${bin}" >&2
echo "${bin}"
