#!/usr/bin/env bash
# The pipe a user builds first, against socat over a unix socket, in one
# run: `head -c SIZE /dev/zero | vchan-cat` into `vchan-cat -l > /dev/null`
# across two simulated domains (vchan-simd, the default 64 KiB rings and
# 1 MiB rings), and the same through socat, rounds interleaved, medians.
# Target (issue 15): vchan-cat / socat >= 1.0. The ceiling beside them:
# the same pipe through a bare ring of shared memory of each size
# (bench/barecat: vchan-cat's copies, futex wake-ups, nothing else).
# Usage: scripts/bench-cat.sh [-size 4G] [-rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=4G ROUNDS=3
while [ $# -gt 0 ]; do
  case $1 in
    -size) SIZE=$2; shift 2 ;;
    -rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [-size 4G] [-rounds 3]" >&2; exit 2 ;;
  esac
done
if ! command -v socat >/dev/null; then
  echo "bench-cat: installing socat" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends socat >/dev/null
fi

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/vchan-cat" ./cmd/vchan-cat
go build -o "$tmp/vchan-simd" ./cmd/vchan-simd
go build -o "$tmp/barecat" ./bench/barecat
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=$tmp
export VCHAN_SIM_DIR=$tmp/sim
"$tmp/vchan-simd" >"$tmp/simd.log" 2>&1 &
for _ in $(seq 50); do [ -S "$VCHAN_SIM_DIR/control" ] && break; sleep 0.1; done

ms() { echo $(($(date +%s%N) / 1000000)); }
# one KIND: prints the milliseconds of one transfer of SIZE bytes.
one() {
  local t0 t1 p=p$RANDOM
  case $1 in
    vchan|vchan-1m)
      local ring=()
      [ "$1" = vchan-1m ] && ring=(-r 1048576 -w 1048576)
      VCHAN_HOST=sim:1 "$tmp/vchan-cat" "${ring[@]}" -l 2 "$p" >/dev/null &
      local srv=$!
      t0=$(ms)
      head -c "$SIZE" /dev/zero | VCHAN_HOST=sim:2 "$tmp/vchan-cat" -t 10s 1 "$p"
      wait $srv
      t1=$(ms) ;;
    bare|bare-1m)
      local rb=65536
      [ "$1" = bare-1m ] && rb=1048576
      "$tmp/barecat" -ring $rb recv "$shm/barecat-$$-$p" >/dev/null &
      local srv=$!
      t0=$(ms)
      head -c "$SIZE" /dev/zero | "$tmp/barecat" -ring $rb send "$shm/barecat-$$-$p"
      wait $srv
      t1=$(ms) ;;
    socat)
      rm -f "$tmp/s"
      socat -b 65536 UNIX-LISTEN:"$tmp/s" - >/dev/null &
      local srv=$!
      for _ in $(seq 100); do [ -S "$tmp/s" ] && break; sleep 0.01; done
      t0=$(ms)
      head -c "$SIZE" /dev/zero | socat -b 65536 - UNIX-CONNECT:"$tmp/s"
      wait $srv
      t1=$(ms) ;;
  esac
  echo $((t1 - t0))
}
declare -A runs
for _ in $(seq "$ROUNDS"); do
  for k in vchan vchan-1m socat bare bare-1m; do runs[$k]+="$(one $k) "; done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "bench-cat $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(lscpu | sed -n 's/^Model name: *//p'), nproc $(nproc); $SIZE per transfer, $ROUNDS rounds interleaved, medians"
s=$(median <<<"${runs[socat]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| pipe | ms (rounds) | vs socat | vs the bare ring of its size | target | met |"
echo "|---|---|---|---|---|---|"
echo "| socat over a unix socket | $s (${runs[socat]% }) | | | | |"
for k in bare bare-1m; do
  v=$(median <<<"${runs[$k]}")
  label="bare ring of 64 KiB (the ceiling: no protocol, futex wake-ups)"
  [ $k = bare-1m ] && label="bare ring of 1 MiB"
  echo "| $label | $v (${runs[$k]% }) | $(ratio "$s" "$v") | 1 | | |"
done
for k in vchan vchan-1m; do
  v=$(median <<<"${runs[$k]}")
  r=$(ratio "$s" "$v")
  label="vchan-cat, 64 KiB rings (the default)"
  b=$(median <<<"${runs[bare]}")
  if [ $k = vchan-1m ]; then
    label="vchan-cat, 1 MiB rings"
    b=$(median <<<"${runs[bare-1m]}")
  fi
  met=$(awk -v r="$r" 'BEGIN { print (r >= 1.0) ? "yes" : "**no**" }')
  echo "| $label | $v (${runs[$k]% }) | $r | $(ratio "$b" "$v") | ≥ 1.0 (vs socat) | $met |"
done
