#!/usr/bin/env bash
# Runs the POSIX conformance suite pjdfstest against a cfsd mount (an
# export served and mounted in one test process, package
# daemons/cfsd/cfsmount's TestPjdfstest), as root.
#
#   test/posix/pjdfstest.sh SUITE [TEST]
#
# SUITE is a checkout of https://github.com/pjd/pjdfstest (the suite is
# not in this repository and CI cannot download it); it is built in a
# temporary copy, never in SUITE or in this tree. TEST (e.g. chmod/12.t)
# runs one test file verbosely. The summary `prove` prints at the end is
# the pass rate README records. Needs autoconf, automake, gcc, perl
# (prove) and /dev/fuse.
set -euo pipefail

suite=${1:-}
if [[ -z $suite || ! -f $suite/pjdfstest.c ]]; then
	echo "usage: $0 PJDFSTEST_CHECKOUT [TEST]: give the path of a pjdfstest checkout (it has pjdfstest.c)" >&2
	exit 2
fi
if [[ $(id -u) != 0 ]]; then
	echo "$0: run as root (pjdfstest and the FUSE mount need it)" >&2
	exit 2
fi
for tool in autoreconf make cc prove; do
	command -v "$tool" >/dev/null || { echo "$0: $tool is missing: apt-get install autoconf automake gcc make perl" >&2; exit 2; }
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(mktemp -d /tmp/pjdfstest.XXXXXX)
trap 'rm -rf "$build"' EXIT
cp -a "$suite"/. "$build"/
echo "building pjdfstest in $build ..."
(cd "$build" && autoreconf -ifs && ./configure && make pjdfstest) >"$build/build.log" 2>&1 ||
	{ tail -20 "$build/build.log" >&2; echo "$0: pjdfstest did not build (log above)" >&2; exit 1; }

echo "running pjdfstest in a cfsd mount (several minutes) ..."
cd "$repo"
CFS_PJDFSTEST=$build CFS_PJDFSTEST_ONLY=${2:-} go test -count=1 -timeout 60m -run '^TestPjdfstest$' -v ./daemons/cfsd/cfsmount/
