#!/usr/bin/env bash
# Unpacks a Debian release's QEMU (qemu-system-x86 and every library it
# needs, down to that release's libc) into a directory and writes a
# launcher that runs it through that release's own dynamic loader, so a
# Debian 12 host runs Debian 13's QEMU without installing anything:
#   OUTDIR/qemu-system-x86_64   the launcher (takes QEMU's arguments)
#   OUTDIR/root                 the unpacked packages
#   OUTDIR/versions.txt         the packages and versions inside
# Usage: xenlab/fetch-qemu.sh SUITE APTDIR OUTDIR
#   (APTDIR is an apt state of platform.sh's platform_apt, with indexes)
# run.sh calls it for the platforms whose Xen needs a newer QEMU than the
# host's (platform.sh: own_qemu); it does nothing when versions.txt matches
# what apt would pick now.
set -euo pipefail

suite=${1:?usage: fetch-qemu.sh SUITE APTDIR OUTDIR}
aptdir=${2:?usage: fetch-qemu.sh SUITE APTDIR OUTDIR}
out=${3:?usage: fetch-qemu.sh SUITE APTDIR OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=xenlab/platform.sh
. "$here/platform.sh"
papt() { platform_apt "$suite" "$aptdir" "$@"; }

# The dependency closure of qemu-system-x86 (hard dependencies only;
# virtual packages, shown as <name>, are provided by a listed package).
pkgs=$(papt apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances qemu-system-x86 | awk '/^[a-z0-9]/ { print $1 }' | LC_ALL=C sort -u)
# shellcheck disable=SC2086 # word splitting wanted
want=$(papt apt-cache policy $pkgs | awk '/^[a-z0-9]/ { p = $1 } /Candidate:/ { print p, $2 }')
if [ -x "$out/qemu-system-x86_64" ] && [ "$(cat "$out/versions.txt" 2>/dev/null)" = "$want" ]; then
	exit 0
fi
rm -rf "$out"
mkdir -p "$out/debs" "$out/root"
# shellcheck disable=SC2086
(cd "$out/debs" && papt apt-get download -q $pkgs >/dev/null)
for d in "$out"/debs/*.deb; do dpkg -x "$d" "$out/root"; done
rm -rf "$out/debs"
cat >"$out/qemu-system-x86_64" <<EOS
#!/bin/sh
# Debian $suite's QEMU, through its own loader and libraries (fetch-qemu.sh).
r='$out/root'
exec "\$r/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$r/usr/lib/x86_64-linux-gnu" \\
	"\$r/usr/bin/qemu-system-x86_64" -L "\$r/usr/share/qemu" -L "\$r/usr/share/seabios" "\$@"
EOS
chmod 755 "$out/qemu-system-x86_64"
"$out/qemu-system-x86_64" --version | head -1 >&2
echo "$want" >"$out/versions.txt"
