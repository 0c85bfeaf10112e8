#!/usr/bin/env bash
# The project's demo: copies a 16 MiB file between two simulated domains with
# vchan-cat, checks it arrived intact, shows the vchan in xenstore with
# Debian's xenstore-ls, and prints the throughput. Needs no Xen: it runs the
# simulator (vchan-simd) in a fresh directory and removes everything after.
# Usage: scripts/demo.sh            (exit status 0 when every step worked)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

step() { printf '\n== %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
die() { echo "demo: FAILED: $*" >&2; exit 1; }

step "building bin/vchan-simd and bin/vchan-cat"
run timeout 300 go build -o bin/vchan-simd ./cmd/vchan-simd
run timeout 300 go build -o bin/vchan-cat ./cmd/vchan-cat

work=$(mktemp -d "${TMPDIR:-/tmp}/vchan-demo.XXXXXX")
export VCHAN_SIM_DIR=$work/sim
simd_pid=
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "$simd_pid" ]; then
		kill -TERM "$simd_pid" 2>/dev/null || true
		timeout 10 tail --pid="$simd_pid" -f /dev/null || kill -KILL "$simd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# Waits up to $1 seconds for the command in the remaining arguments to
# succeed.
wait_for() {
	local limit=$1; shift
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.05
	done
}

# With Xen here, vchan-cat would pick it; the demo wants the simulator.
host=()
if [ -e /dev/xen/evtchn ]; then
	host=(-host sim)
	cat <<EOF

Xen is here (/dev/xen/evtchn exists). To run the transfer between dom0 and a
domU (say domain 5) for real, copy bin/vchan-cat into the domU and run:
  in dom0:   bin/vchan-cat -l 5 5000 > out
  in dom5:   vchan-cat 0 5000 < in
This demo runs in the simulator all the same.
EOF
fi

step "starting the simulator (vchan-simd) in $VCHAN_SIM_DIR"
bin/vchan-simd 2>"$work/simd.log" &
simd_pid=$!
wait_for 10 test -S "$VCHAN_SIM_DIR/control" || { cat "$work/simd.log" >&2; die "vchan-simd did not start"; }
cat "$work/simd.log"

size=$((16 << 20))
step "making a $((size >> 20)) MiB random file"
printf '+ head -c %d /dev/urandom > in\n' "$size"
timeout 60 head -c "$size" /dev/urandom >"$work/in" || die "making the file"

step "sending it from domain 1 to a listener in domain 0"
printf '+ vchan-cat -domid 0 -l 1 5000 > out &     (the server, in domain 0, for domain 1)\n'
timeout 60 bin/vchan-cat "${host[@]}" -domid 0 -l 1 5000 >"$work/out" &
server=$!
pids+=("$server")
printf '+ vchan-cat -t 30s -domid 1 0 5000 < in    (the client, in domain 1; -t: wait for the server to start)\n'
start=$(date +%s%N)
timeout 60 bin/vchan-cat "${host[@]}" -t 30s -domid 1 0 5000 <"$work/in" || die "the client failed"
wait "$server" || die "the server failed"
end=$(date +%s%N)

step "comparing"
(cd "$work" && run sha256sum in out)
[ "$(sha256sum <"$work/in")" = "$(sha256sum <"$work/out")" ] || die "the file changed on the way"
echo "identical"

step "the vchan in xenstore, seen by Debian's xenstore-ls as dom0, while a listener waits"
timeout 60 bin/vchan-cat "${host[@]}" -domid 0 -l 1 demo </dev/null 2>"$work/listener.log" &
listener=$!
pids+=("$listener")
export XENSTORED_PATH=$VCHAN_SIM_DIR/dom0/xenstored
wait_for 10 timeout 5 xenstore-read /local/domain/0/data/vchan/1/demo/ring-ref || { cat "$work/listener.log" >&2; die "the listener did not publish its ring"; }
run timeout 10 xenstore-ls -f -p /local/domain/0/data/vchan
kill -TERM "$listener"
status=0
wait "$listener" || status=$?
[ "$status" -eq 143 ] || { cat "$work/listener.log" >&2; die "the listener exited with status $status"; }
if timeout 5 xenstore-read /local/domain/0/data/vchan/1/demo/ring-ref >/dev/null 2>&1; then
	die "the stopped listener left its xenstore entry behind"
fi
echo "listener stopped; its xenstore entry is gone"
unset XENSTORED_PATH

step "throughput"
awk -v b="$size" -v ns="$((end - start))" 'BEGIN {
	s = ns / 1e9
	printf "%d bytes in %.3f s: %.1f MiB/s (wall time of the client, connection set-up and final flush included)\n", b, s, b / s / 1048576
}'

step "stopping the simulator"
kill -TERM "$simd_pid"
timeout 10 tail --pid="$simd_pid" -f /dev/null || die "vchan-simd did not stop"
wait "$simd_pid" || true
simd_pid=
echo "demo: all steps passed"
