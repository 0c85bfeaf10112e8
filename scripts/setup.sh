#!/usr/bin/env bash
# Installs what the tests need beyond Go itself, from Debian's packages:
#   gcc + linux-libc-dev  the layout tests compile C against /usr/include/xen/*.h
#   xenstore-utils        the interop tests drive our xenstore server with
#                         Debian's C xenstore tools
# and staticcheck from the Go module proxy. Idempotent; needs root for apt.
set -euo pipefail

need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
[ -f /usr/include/xen/gntalloc.h ] || need+=(linux-libc-dev)
command -v xenstore-ls >/dev/null || need+=(xenstore-utils)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

GOBIN=$(go env GOPATH)/bin
if [ ! -x "$GOBIN/staticcheck" ]; then
  echo "setup: installing staticcheck" >&2
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

# Xen's own C libxenvchan and vchan-socket-proxy for the interop tests,
# unpacked into .cache/interop (not installed).
"$(dirname "$0")/interop-deps.sh" >/dev/null
