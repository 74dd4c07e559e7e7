#!/usr/bin/env bash
# Provide the pinned Consul binary and print its path.
#
# The one on PATH is used when its version matches; otherwise Consul is built
# once from the Go module proxy into a cache under $HOME/.cache/openssi. Consul's
# own go.mod carries replace directives that only work inside its repository,
# so it is built through a tiny wrapper module with GOFLAGS=-mod=mod, which
# resolves its dependencies to their published versions.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-1.20.6}"
cache="${OPENSSI_CACHE:-${HOME}/.cache/openssi}/consul-${CONSUL_VERSION}"
bin="${cache}/consul"

if command -v consul >/dev/null 2>&1; then
	if consul version 2>/dev/null | head -1 | grep -qx "Consul v${CONSUL_VERSION}"; then
		command -v consul
		exit 0
	fi
fi
if [ -x "${bin}" ] && "${bin}" version 2>/dev/null | head -1 | grep -qx "Consul v${CONSUL_VERSION}"; then
	echo "${bin}"
	exit 0
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
