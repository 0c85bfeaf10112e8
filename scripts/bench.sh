#!/usr/bin/env bash
# Runs the cross-process benchmarks of issue 8 and prints one table with
# every figure and ratio taken in this one run on this machine:
#   bulk (64 KiB writes, 64 KiB rings): Go↔Go across two processes over
#   vchan-simd, C↔C / Go→C / C→Go with Debian's real libxenvchan through the
#   shims of interop/shim, a unix socket pair between two Go processes, and
#   memmove of 64 KiB on one core; 1-byte ping-pong (Go↔Go, C↔C, unix);
#   allocations per Read/Write of the Go peers; CPU of an idle Go peer.
# The driver is bench/vchanbench (see its doc comment). Extra arguments go
# to it, e.g.  scripts/bench.sh -rounds 30 -spins off,100us
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh >&2

echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), nproc $(nproc)"
echo "go:      $(go version)"
echo
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/vchanbench" ./bench/vchanbench
"$bin/vchanbench" -repo "$repo" "$@"
