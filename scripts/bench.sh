#!/usr/bin/env bash
# Runs the cross-process benchmarks and prints one table with every figure
# and ratio taken in this one run on this machine, each target row saying
# whether it is met:
#   bulk (64 KiB writes) over each ring size of -rings (64 KiB and 1 MiB by
#   default): Go↔Go across two processes over vchan-simd against the bare
#   ring of the same size (target >= 0.85) and, at 1 MiB, against a unix
#   socket pair (target >= 1.5); C↔C, Go→C, C→Go with Debian's libxenvchan
#   through the shims of interop/shim; memmove as context; 1-byte ping-pong
#   (Go↔Go, C↔C, unix); context switches per MiB and per round trip;
#   allocations per Read/Write of the Go peers; CPU of an idle Go peer;
#   then scripts/bench-cat.sh: the vchan-cat pipe against socat.
# The driver is bench/vchanbench (see its doc comment). Extra arguments go
# to it, e.g.  scripts/bench.sh -rounds 30 -spins off,100us -rings 65536
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
echo
# The vchan-cat pipe against socat (issue 15's last throughput target).
scripts/bench-cat.sh
