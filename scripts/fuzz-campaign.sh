#!/usr/bin/env bash
# Runs every fuzz target for EXECS executions or MAXTIME, whichever comes
# first, JOBS targets at a time with one fuzz worker each, and prints a table
# of executions, time and result per target (the figures docs/HOSTILE.md
# records). A failing input is written by Go to the package's testdata/fuzz,
# where it stays as a regression case.
# Usage: scripts/fuzz-campaign.sh [-execs N] [-maxtime 15m] [-jobs 2] [-only REGEX]
set -euo pipefail
cd "$(dirname "$0")/.."

EXECS=10000000 MAXTIME=15m JOBS=2 ONLY=.
while [ $# -gt 0 ]; do
  case $1 in
    -execs) EXECS=$2; shift 2 ;;
    -maxtime) MAXTIME=$2; shift 2 ;;
    -jobs) JOBS=$2; shift 2 ;;
    -only) ONLY=$2; shift 2 ;;
    *) echo "usage: $0 [-execs N] [-maxtime 15m] [-jobs 2] [-only REGEX]" >&2; exit 2 ;;
  esac
done

logs=$(mktemp -d /tmp/fuzz-campaign.XXXX)
targets=()
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for t in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //' | sort -u); do
    if [[ $t =~ $ONLY ]]; then targets+=("$pkg $t"); fi
  done
done
echo "== ${#targets[@]} targets, $EXECS executions or $MAXTIME each, $JOBS at a time; logs in $logs"
echo "   CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(go version | cut -d' ' -f3)"

# The test binaries are built once, before any clock starts.
for entry in "${targets[@]}"; do go test -count=1 -run '^$' "${entry% *}" >/dev/null; done

run_one() {
  local pkg=$1 t=$2 log=$logs/$2.log
  # SIGINT at MAXTIME makes the coordinator stop and report like a normal end.
  local rc=0 # (under set -e, timeout's 124 would end the function here)
  timeout -s INT "$MAXTIME" go test -run '^$' -fuzz "^$t\$" -fuzztime "${EXECS}x" -parallel 1 "$pkg" >"$log" 2>&1 || rc=$?
  echo $rc >"$logs/$t.rc"
}

running=0
for entry in "${targets[@]}"; do
  run_one $entry &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

failed=0
printf '%-34s %-22s %14s %9s  %s\n' package target executions elapsed result
for entry in "${targets[@]}"; do
  pkg=${entry% *} t=${entry#* } log=$logs/${entry#* }.log
  last=$(grep -E '^fuzz: elapsed: ' "$log" | tail -1 || true) # none when a run ends within a second
  execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
  elapsed=$(sed -nE 's/^fuzz: elapsed: ([0-9hms]+),.*/\1/p' <<<"$last")
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo "?")
  if grep -q 'Failing input written' "$log" || { [ "$rc" != 0 ] && [ "$rc" != 124 ]; } || ! grep -q '^ok' "$log"; then
    result="FAIL (see $log)"; failed=1
  elif [ "$rc" = 124 ]; then result="ok, stopped at $MAXTIME"
  else result="ok"; fi
  printf '%-34s %-22s %14s %9s  %s\n' "${pkg#github.com/vchan-go/vchan/}" "$t" "${execs:-?}" "${elapsed:-?}" "$result"
done
exit $failed
