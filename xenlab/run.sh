#!/usr/bin/env bash
# Proves the vchan library on real Xen: boots Xen and a Debian dom0 under
# QEMU (TCG), starts PV domUs, runs the project's tests in them, and prints
# a summary. Runs the plan on each platform of platform.sh (Xen 4.17 on
# Debian 12, Xen 4.20 on Debian 13), then a table of every item per
# platform (also in .cache/xenlab/summary.txt). Exits non-zero if any test
# failed or a guest hung.
#
#   xenlab/run.sh                 every platform (builds images when needed)
#   xenlab/run.sh matrix          only the table, from the last runs' results
#   xenlab/run.sh prepare         only build the images and fetch the
#                                 emulators (what CI does beside its
#                                 tests and short stress run)
#   XENLAB_PLATFORM=xen-4.20      one platform (its summary in
#                                 .cache/xenlab/xen-4.20/summary.txt)
#   XENLAB_TIMEOUT=900 xenlab/run.sh   QEMU's wall-clock limit per boot in seconds (1500)
#   XENLAB_XENSTORED=xenstored         one boot, the whole plan, with this
#                                      xenstored (default: the whole plan
#                                      with oxenstored, then the dom0 tests
#                                      again with C xenstored)
#   XENLAB_TPUT_BYTES=16777216         bytes per throughput transfer
#   XENLAB_ROUNDS=3                    rounds of the timed items f and h
#                                      (CI runs 1: a check, not a table)
#   XENLAB_QUOTA=0                     skip the many-Listeners quota test
#   XENLAB_PLAN=perf                   one boot, only the timed items (f, h,
#                                      n): for A/Bs, not a test of the code
#   XENLAB_PLAN=domus XENLAB_REPEAT=20 one boot, only the domU <-> domU
#                                      nettest (i.nettest), repeated up to
#                                      20 times or 15 minutes: a hunt for
#                                      a rare failure
#   XENLAB_SCEN_N=100                  connections per cell of item s (CI
#                                      runs 25)
#   XENLAB_PLAN=faults XENLAB_MERGE=<results.txt>
#                                      one boot, only the timing-bound fault
#                                      items (kill -9, xl destroy); their
#                                      results replace those of the same id
#                                      in that earlier results file (a copy
#                                      of it): CI's retry when only such
#                                      items failed (.ci/run)
#   XENLAB_KILL_ROUNDS=1               rounds of the kill -9 items between
#                                      the domUs (i.kill; with XENLAB_BASE
#                                      also the base build's, interleaved)
#   XENLAB_BASE=<git revision>         also time vchanpeer built from that
#                                      revision ("base" rows in f, h, n):
#                                      an A/B of library code in one boot
#
# Each platform's image (Xen, kernel, dom0 and domU roots, from Debian's
# packages) lives in .cache/xenlab/<platform>/image and is rebuilt when the
# hash of its inputs changes: xenlab/packages.txt with the versions apt
# would pick, the build scripts and the guest scripts. Go code is built here
# and carried in through the 9p share (dom0) and an appended cpio (domU);
# nothing Go runs outside it. Needs root (debootstrap, chroot) and Debian's
# apt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# shellcheck source=xenlab/platform.sh
. xenlab/platform.sh

# The items of the plan, in the order of the summaries.
items=(
	"a. dom0 real devices: evtchn, gnt, xenstore (socket, /dev/xen/xenbus)"
	"b. nettest.TestConn over XenHost within one domain (0x0, 64K, 1M rings)"
	"c. dom0 <-> domU: nettest.TestConn (via a relay), Go server and client checksummed"
	"d. interop with libxenvchan (vchan-ref), both roles, several ring sizes"
	"e. faults: kill -9 of the peer, xl destroy of the domU, xenstore cleanup"
	"f. throughput Go vs libxenvchan, dom0 <-> domU"
	"g. vchan-cat dom0 <-> domU: files, -e, bridges with vchan-socket-proxy"
	"h. 1-byte round trip Go vs libxenvchan, dom0 <-> domU"
	"i. domU <-> domU: Go and C both roles, nettest, vchan-cat, kill -9 and xl destroy of one seen by the other"
	"n. counts per MiB and per round trip: switches, CPU, system calls"
	"s. spec scenario: the sender closes right after writing, Go and C both sides, both directions"
)
item_status() { # RESULTS-FILE LETTER: the roll-up of every result whose id starts with "LETTER."
	local ids
	ids=$(awk -v p="$2." 'index($1, p) == 1' "$1" 2>/dev/null)
	if [ -z "$ids" ]; then
		echo "NOT RUN"
	elif grep -q ' FAIL ' <<<"$ids"; then
		echo FAIL
	else
		echo PASS
	fi
}

# matrix: every item per platform, from each platform's last results.
matrix() {
	local p it line
	echo "xenlab: items per platform ($(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
	line=
	for p in $XENLAB_PLATFORMS; do line+=$(printf '%-10s' "$p"); done
	echo "${line}item"
	for it in "${items[@]}"; do
		line=
		for p in $XENLAB_PLATFORMS; do line+=$(printf '%-10s' "$(item_status "$repo/.cache/xenlab/$p/logs/results.txt" "${it%%.*}")"); done
		echo "$line$it"
	done
	for p in $XENLAB_PLATFORMS; do
		echo "$p: $(sed -n 2p "$repo/.cache/xenlab/$p/summary.txt" 2>/dev/null || echo 'no run'); $(sed -n 1p "$repo/.cache/xenlab/$p/summary.txt" 2>/dev/null | sed 's/^xenlab summary //')"
	done
}
if [ "${1:-}" = matrix ]; then
	matrix | tee "$repo/.cache/xenlab/summary.txt"
	exit 0
fi

# Without XENLAB_PLATFORM: each platform in turn, then the table.
if [ -z "${XENLAB_PLATFORM:-}" ]; then
	rc=0
	for p in $XENLAB_RUN; do
		XENLAB_PLATFORM=$p "$0" "$@" || rc=1
	done
	[ "${1:-}" != prepare ] || exit $rc
	echo
	matrix | tee "$repo/.cache/xenlab/summary.txt"
	exit $rc
fi
platform=$XENLAB_PLATFORM
platform_vars "$platform"
qemu_cpu=${XENLAB_QEMU_CPU:-qemu64}
cache=$repo/.cache/xenlab/$platform
img=$cache/image
aptdir=$cache/apt
share=$cache/share
logs=$cache/logs
summary=$cache/summary.txt
timeout_s=${XENLAB_TIMEOUT:-1500}
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
say() { echo "xenlab: $platform: [$(elapsed) s] $*" >&2; }
mkdir -p "$cache"

# 1. Host tools, from Debian.
need=()
for p in $(platform_packages host xenlab/packages.txt); do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	say "installing host packages: ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. The image, rebuilt when its inputs change.
papt() { platform_apt "$suite" "$aptdir" "$@"; }
say "fetching the $suite package indexes"
papt update
inputs_hash() {
	{
		echo "$platform"
		cat xenlab/packages.txt xenlab/platform.sh xenlab/build-image.sh xenlab/guest/dom0-init.sh xenlab/guest/domu-init.sh xenlab/guest/vchan-ref.c
		# The versions apt would pick now, for every package named.
		# shellcheck disable=SC2046
		papt apt-cache policy $(platform_packages boot xenlab/packages.txt) $(platform_packages rootfs xenlab/packages.txt) 2>/dev/null | grep -E '^[^ ]|Candidate'
		papt apt-cache depends linux-image-amd64 2>/dev/null | grep Depends
	} | sha256sum | cut -c1-16
}
rx_bytes() { awk 'NR > 2 && $1 != "lo:" { sum += $2 } END { printf "%.0f\n", sum }' /proc/net/dev; }
want=$(inputs_hash)
if [ -f "$img/hash" ] && [ "$(cat "$img/hash")" = "$want" ]; then
	say "image $want is up to date ($img)"
else
	say "building the image $want (Debian packages -> $img)"
	rx0=$(rx_bytes)
	t=$(date +%s)
	xenlab/build-image.sh "$platform" "$img" "$aptdir"
	echo "$want" >"$img/hash"
	echo "image built in $(($(date +%s) - t)) s, downloaded about $((($(rx_bytes) - rx0) / 1048576)) MiB" >"$img/build-info.txt"
	say "$(cat "$img/build-info.txt")"
fi

# The emulator: the host's QEMU, or the platform's release's (fetch-qemu.sh).
qemu=qemu-system-x86_64
if [ -n "$own_qemu" ]; then
	say "unpacking Debian $suite's QEMU when needed ($cache/qemu)"
	xenlab/fetch-qemu.sh "$suite" "$aptdir" "$cache/qemu"
	qemu=$cache/qemu/qemu-system-x86_64
fi
qemu_version=$("$qemu" --version | awk 'NR == 1 { print $4 }')
if [ "${1:-}" = prepare ]; then
	say "image and QEMU $qemu_version ready"
	exit 0
fi

# 3. The Go code under test, built here.
say "building the Go test binaries"
rm -rf "$share" "$logs"
mkdir -p "$share/bin" "$share/logs" "$logs"
export CGO_ENABLED=0
go test -c -o "$share/bin/evtchn.test" ./internal/evtchn
go test -c -o "$share/bin/gnt.test" ./internal/gnt
go test -c -o "$share/bin/guesttest.test" ./xenlab/guesttest
go build -o "$share/bin/vchanpeer" ./xenlab/vchanpeer
go build -o "$share/bin/vchan-cat" ./cmd/vchan-cat
go build -o "$share/bin/procstat" ./xenlab/procstat
if [ -n "${XENLAB_BASE:-}" ]; then
	say "building vchanpeer at $XENLAB_BASE ($(git rev-parse --short "$XENLAB_BASE")) for the base rows"
	base_src=$(mktemp -d)
	git archive "$XENLAB_BASE" | tar -x -C "$base_src"
	(cd "$base_src" && go build -o "$share/bin/base/vchanpeer" ./xenlab/vchanpeer)
	rm -rf "$base_src"
fi
install -m 755 xenlab/guest/dom0-tests.sh "$share/run.sh"
ln -f "$img/vmlinux" "$share/vmlinux" 2>/dev/null || cp "$img/vmlinux" "$share/vmlinux"
# The domU gets the Go binaries in a cpio appended to its root.
extra=$(mktemp -d)
trap 'rm -rf "$extra"' EXIT
mkdir -p "$extra/usr/local/bin"
cp "$share/bin/vchanpeer" "$share/bin/vchan-cat" "$share/bin/guesttest.test" "$share/bin/procstat" "$extra/usr/local/bin/"
if [ -d "$share/bin/base" ]; then cp -r "$share/bin/base" "$extra/usr/local/bin/"; fi
(cd "$extra" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | cat "$img/domu-base.cpio" - >"$share/domu-initrd.cpio"

# 4. Boot Xen + dom0; dom0's init runs share/run.sh and powers off. Two
# boots: the whole plan with oxenstored (Debian's default), then the dom0
# tests (devices, nettest, interop, kill -9) again with C xenstored.
boot() { # TAG XENSTORED PLAN: one boot; its console and results in $logs
	local tag=$1 xs=$2 plan=$3 rc
	say "boot $tag: Xen + dom0 under QEMU (TCG), $xs, plan $plan, limit ${timeout_s} s; console: $logs/console-$tag.log"
	rm -f "$share/results.txt"
	set +e
	timeout -k 10 "$timeout_s" "$qemu" -machine q35,accel=tcg -cpu "$qemu_cpu" -smp 2 -m 2048 \
		-nographic -no-reboot \
		-kernel "$img/xen.elf" \
		-append "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 loglvl=all guest_loglvl=all noreboot" \
		-initrd "$img/vmlinuz console=hvc0 earlyprintk=xen XENSTORED=$xs PLAN=$plan TPUT_BYTES=${XENLAB_TPUT_BYTES:-16777216} QUOTA_TEST=${XENLAB_QUOTA:-1} ROUNDS=$rounds SCEN_N=${XENLAB_SCEN_N:-100} KILL_ROUNDS=${XENLAB_KILL_ROUNDS:-1} REPEAT=${XENLAB_REPEAT:-20},$img/dom0-initrd.gz" \
		-virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
		</dev/null 2>&1 | sed -u 's/\r//g' | tee "$logs/console-$tag.log" |
		grep --line-buffered -E '^XENLAB-(DOM0|RESULT|LOG|FATAL|POWEROFF|DONE|TPUT|RTT|COPY|COUNT|SYSCALLS)'
	rc=${PIPESTATUS[0]}
	set -e
	say "boot $tag: QEMU exited (rc $rc)"
	cat "$share/results.txt" >>"$logs/results.txt" 2>/dev/null || true
	mkdir -p "$logs/guest-$tag"
	cp -r "$share/logs/." "$logs/guest-$tag/" 2>/dev/null || true
	rm -rf "$share/logs"
	mkdir -p "$share/logs"
	if grep -q '^XENLAB-DONE' "$logs/console-$tag.log"; then
		echo "$tag $xs: finished" >>"$logs/boots.txt"
	else
		echo "$tag $xs: GUEST DID NOT FINISH (QEMU rc $rc$([ "$rc" = 124 ] && echo ": killed after ${timeout_s} s"))" >>"$logs/boots.txt"
	fi
}
: >"$logs/results.txt"
: >"$logs/boots.txt"
plan=${XENLAB_PLAN:-full}
rounds=${XENLAB_ROUNDS:-3}
boot full "${XENLAB_XENSTORED:-oxenstored}" "$plan"
[ -n "${XENLAB_XENSTORED:-}" ] || [ "$plan" != full ] || boot cxenstored xenstored devices

# A retry of some items: their results replace the earlier run's of the
# same id; the earlier run's other results stand as they were.
merged=
if [ -n "${XENLAB_MERGE:-}" ]; then
	awk 'NR == FNR { redo[$1] = $0; next } $1 in redo { print redo[$1]; delete redo[$1]; next } { print }
		END { for (id in redo) print redo[id] }' "$logs/results.txt" "$XENLAB_MERGE" >"$logs/results.merged"
	merged=$(grep -c . "$logs/results.txt" || true)
	mv "$logs/results.merged" "$logs/results.txt"
fi

# 5. Summary.
results=$logs/results.txt
targets=$logs/targets.txt
: >"$targets"
bulkmed=$logs/bulk-medians.txt # direction ring, C and Go-no-spin MB/s, C's bytes per read
# median(k): the median of v[k, 1..n[k]], for the awk programs below that
# keep their samples that way.
median_nv='function median(k,   i, j, t, a, m) {
	m = n[k]
	for (i = 1; i <= m; i++) a[i] = v[k, i]
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
'
: >"$bulkmed"
{
	echo "xenlab summary ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(elapsed) s wall, image $(cat "$img/hash"))"
	echo "platform $platform: Debian $suite, xen $(awk '/^boot xen-hypervisor/ { print $3 }' "$img/manifest.txt"), kernel $(cat "$img/kernel-version"), QEMU $qemu_version ($qemu_cpu, TCG)"
	echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
	[ -f "$img/build-info.txt" ] && echo "image: $(cat "$img/build-info.txt")"
	sed 's/^/boot /' "$logs/boots.txt"
	if [ -n "$merged" ]; then
		echo "plan $plan: $merged results of this boot replace those of the same id from $XENLAB_MERGE; the others are that run's"
	elif [ "$plan" != full ]; then
		echo "plan $plan: only some items ran"
	fi
	[ "$rounds" = 3 ] || echo "timed items f and h: $rounds round(s), not 3 (XENLAB_ROUNDS)"
	[ -z "${XENLAB_BASE:-}" ] || echo "base rows: vchanpeer at $XENLAB_BASE ($(git rev-parse --short "$XENLAB_BASE")); the others at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- vchan internal xenlab/vchanpeer || echo ' + uncommitted changes')"
	echo
	for it in "${items[@]}"; do
		printf '%-9s %s\n' "$(item_status "$results" "${it%%.*}")" "$it"
	done
	echo "(a, b, d.self*, e.kill* ran with oxenstored and again with C xenstored: ids @xenstored)"
	echo
	echo "results:"
	sed 's/^/  /' "$results"
	if grep -q '^XENLAB-TPUT' "$logs/console-full.log"; then
		echo
		echo "throughput (TCG-emulated machine: compare ratios only)"
		echo "(data: the receiver's own timing of the bytes after its first read; wall: the whole transfer,"
		echo " which includes about 1 s of process start-up, connection and checksums)"
		echo "(medians of the rounds; the data MB/s of each round in brackets)"
		awk -v targets="$targets" -v bulkmed="$bulkmed" '/^XENLAB-TPUT/ && $6 ~ /^[0-9]+$/ {
			key = $3 " ring " $4; k = $2 "|" key; keys[key] = 1
			nw[k]++; wall[k, nw[k]] = $5 / $6 / 1000
			d = $7; sub(/x$/, "", d)
			if (split(d, f, ":") >= 2 && f[1] > 0) { nd[k]++; data[k, nd[k]] = f[2] * 1000 / f[1]; reads[k, nd[k]] = f[3]; perread[k, nd[k]] = f[3] ? f[2] / f[3] : 0 } }
			function median(arr, k, m,   i, j, t, a) {
				for (i = 1; i <= m; i++) a[i] = arr[k, i]
				for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
				return m == 0 ? 0 : m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
			}
			function rounds(k,   i, s) {
				for (i = 1; i <= nd[k]; i++) s = s (i > 1 ? " " : "") sprintf("%.1f", data[k, i])
				return s
			}
			function ratio(a, b) { return (a && b) ? sprintf("%.2f", a / b) : "-" }
			END {
				printf "  %-26s %-12s %10s %6s %10s %6s %7s  %s\n", "direction", "peers", "data MB/s", "vs C", "wall MB/s", "vs C", "reads", "rounds"
				n = split("go go-nospin ref base base-nospin go-p2", impl, " ")
				split("Go|Go, no spin|C|Go base|Go base, no spin|Go GOMAXPROCS=2", label, "|")
				for (key in keys) {
					c = "ref|" key
					for (i = 1; i <= n; i++) {
						k = impl[i] "|" key
						if (nw[k])
							printf "  %-26s %-12s %10.2f %6s %10.2f %6s %7s  [%s]\n", key, label[i],
								median(data, k, nd[k]), ratio(median(data, k, nd[k]), median(data, c, nd[c])),
								median(wall, k, nw[k]), ratio(median(wall, k, nw[k]), median(wall, c, nw[c])),
								median(reads, k, nd[k]), rounds(k)
					}
					if (nd[c] && nd["go-nospin|" key])
						print key, median(data, c, nd[c]), median(data, "go-nospin|" key, nd["go-nospin|" key]), median(perread, c, nd[c]) >bulkmed
					r = ratio(median(data, "go|" key, nd["go|" key]), median(data, c, nd[c]))
					if (r != "-")
						printf("  %-48s %6s  %-7s %s\n", "bulk data phase, " key, r, ">= 1.0", (r + 0 >= 1.0) ? "yes" : "no") >>targets
				}
			}' "$logs/console-full.log" | sort -s -k1,3
		awk '/^XENLAB-COPY/ { printf "  memory copy in 16 KiB chunks, %s: %s MB/s\n", $2 == "ref" ? "C memcpy" : "Go copy", $4 }' "$logs/console-full.log"
		# n.dd: a file copied to a file in 64 KiB reads and writes, no vchan.
		awk "$median_nv"'/^XENLAB-DD/ && $4 > 0 { k = $2 " " $3; n[k]++; v[k, n[k]] = $4 }
			END {
				if (length(n) == 0) exit
				print "  a file copied to a file in 64 KiB reads and writes, no vchan (n.dd: vchanpeer -dd, vchan-ref -dd; medians, ms):"
				split("dom0 domU", side, " ")
				for (s = 1; s <= 2; s++) {
					c = median(side[s] " ref")
					line = sprintf("    %-5s C %.1f", side[s], c / 1e6)
					split("go go-p2", impl, " ")
					for (i = 1; i <= 2; i++) if (n[side[s] " " impl[i]] > 0) {
						g = median(side[s] " " impl[i])
						line = line sprintf(", %s %.1f (%.2fx C)", impl[i] == "go" ? "Go" : "Go GOMAXPROCS=2", g / 1e6, c > 0 ? g / c : 0)
					}
					print line
				}
			}' "$logs/console-full.log"
	fi
	if grep -q '^XENLAB-RTT' "$logs/console-full.log"; then
		echo
		echo "1-byte round trip, client in dom0, server in the domU (TCG: ratios only; median of the rounds)"
		awk -v targets="$targets" -v bulkmed="$bulkmed" "$median_nv"'/^XENLAB-RTT/ { n[$2]++; v[$2, n[$2]] = $3 }
			function rounds(k,   i, s) {
				for (i = 1; i <= n[k]; i++) s = s (i > 1 ? " " : "") sprintf("%.0f", v[k, i] / 1000)
				return s
			}
			END {
			printf "  %-32s %10s %8s  %s\n", "peers", "µs", "vs C", "rounds (µs)"
			c = n["ref"] ? median("ref") : 0
			nk = split("go go-nospin go-p1 ref events base base-nospin", k, " ")
			split("Go (default spin 200 µs)|Go, spinning off|Go, GOMAXPROCS=1|C libxenvchan (blocking)|Go bare event channel, no ring|Go base (XENLAB_BASE)|Go base, spinning off", label, "|")
			for (i = 1; i <= nk; i++)
				if (n[k[i]]) {
					m = median(k[i])
					printf "  %-32s %10.1f %8s  %s\n", label[i], m / 1000, c ? sprintf("%.2f", m / c) : "-", rounds(k[i])
				}
			if (c && n["go"])
				printf("  %-48s %6.2f  %-7s %s\n", "1-byte round trip, default", median("go") / c, "<= 0.8", (median("go") / c <= 0.8) ? "yes" : "no") >>targets
			if (c && n["go-nospin"])
				printf("  %-48s %6.2f  %-7s %s\n", "1-byte round trip, spinning off", median("go-nospin") / c, "<= 1.2", (median("go-nospin") / c <= 1.2) ? "yes" : "no") >>targets
			# What limits bulk over rings that each read empties: Go and C
			# alike then take one round trip of events per ring-full, and a
			# Go program that waits through evtchn.Channel.Wait exchanges
			# events about as fast as the bare event channel.
			if (n["events"] && (getline line <bulkmed) > 0) {
				e = median("events")
				printf "\nthe bulk that one bare event round trip (%.0f µs, Go) per ring-full allows, where C reads a whole\n", e / 1000
				printf "ring per wake-up (both then take one round trip of events per ring-full); MB/s of the data phase\n"
				printf "  %-26s %12s %8s %14s %10s\n", "direction", "allows MB/s", "vs C", "Go no spin", "Go / it"
				do {
					split(line, f, " ")
					if (f[6] < 0.9 * f[3])
						continue # C reads part of a ring at a time: wake-ups per ring unknown
					allows = f[3] * 1000 / e
					printf "  %-26s %12.2f %8.2f %14.2f %10.2f\n", f[1] " ring " f[3], allows, allows / f[4], f[5], f[5] / allows
				} while ((getline line <bulkmed) > 0)
			}
		}' "$logs/console-full.log"
	fi
	if [ -s "$targets" ]; then
		echo
		echo "issue 15's targets on real Xen, Go/C from the medians above (TCG: a check of the ratios, not figures to quote)"
		printf '  %-48s %6s  %-7s %s\n' measure "Go/C" target met
		sort -s -k1,4 "$targets"
	fi
	if grep -q '^XENLAB-COUNT' "$logs/console-full.log"; then
		echo
		echo "counts (item n): per MiB of a 4 MiB transfer dom0 -> domU over 64 KiB rings (bulk) and 1 MiB rings (bulk1M),"
		echo "per 1-byte round trip (rtt);"
		echo "switches and CPU from wait4's rusage;"
		echo "system calls of the dom0 side, counted by strace -c -f in a separate run"
		awk '/^XENLAB-COUNT/ {
				kind = $2; impl = $3; side = $4; u = $5
				for (i = 6; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
				printf "  %-6s %-10s %-5s switches %8.2f   CPU ms %7.3f\n", kind, impl, side,
					(v["vcsw"] + v["ivcsw"]) / u, (v["user_ms"] + v["sys_ms"]) / u
			}
			/^XENLAB-SYSCALLS/ {
				kind = $2; impl = $3; u = $4; line = ""
				for (i = 5; i <= NF; i++) { split($i, kv, "="); line = line sprintf(" %s %.2f", kv[1], kv[2] / u) }
				printf "  %-6s %-10s dom0  syscalls:%s\n", kind, impl, line
			}' "$logs/console-full.log"
	fi
	for run in "bulk:32 MiB dom0 -> domU, 64 KiB rings" "rtt-nospin:1000 round trips, spinning off, client in the domU"; do
		for side in dom0 domU; do
			prof=$logs/guest-full/n.pprof.${run%%:*}.$side
			[ -s "$prof" ] || continue
			echo
			echo "CPU profile of the Go $side end of item n.profile-${run%%:*} (${run#*:}; $prof):"
			go tool pprof -top -nodecount=20 "$prof" 2>/dev/null | sed -n '/^Showing\|^ *flat/,$p' | sed 's/^/  /'
		done
	done
} >"$summary"
cat "$summary"

fail=0
grep -q 'DID NOT FINISH' "$logs/boots.txt" && fail=1
grep -q ' FAIL ' "$results" && fail=1
[ -s "$results" ] || fail=1
if [ $fail = 1 ]; then
	for c in "$logs"/console-*.log; do
		echo
		echo "---- last 40 lines of $c"
		tail -n 40 "$c"
	done
	echo "---- guest logs: $logs/guest-*/"
	exit 1
fi
