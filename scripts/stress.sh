#!/usr/bin/env bash
# Runs every package's tests many times, to find flaky tests before CI does.
# Each package runs in each mode with -count N -cpu 1,2 (so every test runs
# 2N times per mode); the first failure stops the run and is printed whole.
#
# Modes:
#   plain       go test
#   race        go test -race
#   hog         go test, while busy loops keep both cores contended (as on
#               CI's shared 2-core machine)
#   hog-race    go test -race, under the same load
#
# Usage: scripts/stress.sh [-count N] [-modes plain,race,hog,hog-race] [pkg...]
#   full length (every test at least 50 times: 14 per mode, 56 in all;
#   about an hour on 2 cores, docs/TESTING.md):
#     scripts/stress.sh -count 7
#   short form, run by .ci/run (a few minutes):
#     scripts/stress.sh -count 1 -modes hog
set -euo pipefail
cd "$(dirname "$0")/.."

count=7
modes=plain,race,hog,hog-race
while [ $# -gt 0 ]; do
  case "$1" in
    -count) count=$2; shift 2 ;;
    -modes) modes=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "stress.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  mapfile -t pkgs < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
fi

hogs=()
stop_hogs() {
  for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${hogs[@]}"; do wait "$p" 2>/dev/null || true; done
  hogs=()
}
start_hogs() {
  # One busy loop per core, at the tests' own priority, so the tests get
  # about half the machine and their goroutines are descheduled at random.
  for _ in $(seq "$(nproc)"); do
    ( while :; do :; done ) &
    hogs+=($!)
  done
}
out=$(mktemp)
trap 'stop_hogs; rm -f "$out"' EXIT

start=$(date +%s)
IFS=, read -r -a modelist <<< "$modes"
for mode in "${modelist[@]}"; do
  # A hung test fails its package, with every goroutine's stack, instead of
  # stalling the run: the slowest package takes about a minute per count
  # under -race.
  flags=(-count="$count" -cpu 1,2 -timeout "$((4 * count + 10))m")
  case "$mode" in
    plain) ;;
    race) flags+=(-race) ;;
    hog) start_hogs ;;
    hog-race) flags+=(-race); start_hogs ;;
    *) echo "stress.sh: unknown mode $mode" >&2; exit 2 ;;
  esac
  # Build once, outside the timed loop, so a compile error is reported as such.
  if ! go test "${flags[@]}" -run '^$' "${pkgs[@]}" >"$out" 2>&1; then
    echo "== stress: build failed in mode $mode"
    cat "$out"
    exit 1
  fi
  for pkg in "${pkgs[@]}"; do
    t0=$(date +%s)
    if ! CI=${CI:-} go test "${flags[@]}" "$pkg" >"$out" 2>&1; then
      echo "== stress: FAIL in mode $mode: $pkg (-count $count -cpu 1,2)"
      grep -E -- '^(--- FAIL|FAIL|panic:)' "$out" | head -20 || true
      echo "---- full output"
      cat "$out"
      exit 1
    fi
    echo "stress: $mode $pkg ok ($(( $(date +%s) - t0 )) s)"
  done
  stop_hogs
done
echo "== stress: no failure: ${#pkgs[@]} packages, modes $modes, each test $((2 * count)) times per mode, $(( $(date +%s) - start )) s"
