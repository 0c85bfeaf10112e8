#!/usr/bin/env bash
# Fetches Xen's real C vchan library and tools for the interop tests
# (interop/), without installing Xen: the Debian packages are downloaded
# with apt-get download and unpacked with dpkg -x into a cache directory.
#
#   libxenmisc4.17    libxenvchan.so.4.17 (and libxenctrl, unused: a shim
#                     replaces it)
#   xen-utils-4.17    /usr/lib/xen-4.17/bin/vchan-socket-proxy
#   libxen-dev        libxenvchan.h, xengnttab.h, xenevtchn.h, xenctrl.h
#                     (the shims compile against the real prototypes) and
#                     libxenvchan.a
#   libxenstore4,     the real libxenstore, which the C binaries use against
#   libxentoolcore1   the simulator's xenstored sockets
#   libxenmisc4.20    libxenvchan.so.4.20 from Debian 13 (trixie), fetched
#                     through an apt state of its own (xenlab/platform.sh);
#                     VCHAN_INTEROP_XEN=4.20 links the C peer against it
#
# The cache is $VCHAN_INTEROP_CACHE, default <repo>/.cache/interop
# (gitignored); the packages are unpacked under its root/. gcc is installed
# with apt if missing. Idempotent: a second run with everything in place
# does nothing (no network). Needs root (or sudo) for apt-get update/install
# only. Prints the cache directory on success.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${VCHAN_INTEROP_CACHE:-$repo/.cache/interop}
root=$cache/root
pkgs=(libxen-dev libxenmisc4.17 xen-utils-4.17 libxenstore4 libxentoolcore1)
# The files the interop tests use; if all exist, there is nothing to do.
want=(
  usr/lib/x86_64-linux-gnu/libxenvchan.so.4.17
  usr/lib/x86_64-linux-gnu/libxenvchan.so.4.20
  usr/lib/x86_64-linux-gnu/libxenvchan.a
  usr/lib/x86_64-linux-gnu/libxenstore.so.4
  usr/lib/x86_64-linux-gnu/libxentoolcore.so.1
  usr/lib/xen-4.17/bin/vchan-socket-proxy
  usr/include/libxenvchan.h
  usr/include/xengnttab.h
  usr/include/xenevtchn.h
  usr/include/xenctrl.h
)

SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
updated=

apt_update() {
  if [ -z "$updated" ]; then
    $SUDO apt-get update -qq
    updated=1
  fi
}

if ! command -v gcc >/dev/null || ! command -v make >/dev/null; then
  echo "interop-deps: installing gcc and make" >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev make >/dev/null
fi

missing=0
for f in "${want[@]}"; do
  [ -e "$root/$f" ] || missing=1
done
if [ "$missing" -eq 0 ]; then
  echo "$cache"
  exit 0
fi

echo "interop-deps: fetching ${pkgs[*]} into $cache" >&2
apt_update
mkdir -p "$cache/debs"
rm -rf "$root.tmp"
mkdir -p "$root.tmp"
(
  cd "$cache/debs"
  rm -f ./*.deb
  # Sandbox::User=root: the _apt user may not be able to write the cache.
  apt-get download -qq -o APT::Sandbox::User=root "${pkgs[@]}"
  # Debian 13's libxenvchan, from trixie's indexes in an apt state of
  # our own (the host's sources stay as they are).
  . "$repo/xenlab/platform.sh"
  platform_apt trixie "$cache/apt-trixie" update
  platform_apt trixie "$cache/apt-trixie" apt-get download -qq libxenmisc4.20
  for deb in ./*.deb; do
    dpkg -x "$deb" "$root.tmp"
  done
  ls ./*.deb >"$root.tmp/PACKAGES"
)
for f in "${want[@]}"; do
  if [ ! -e "$root.tmp/$f" ]; then
    echo "interop-deps: $f missing from the packages (a different Xen version?)" >&2
    exit 1
  fi
done
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$cache"
