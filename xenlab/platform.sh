# shellcheck shell=bash
# xenlab's platforms: a Debian release with the Xen and Linux it ships.
# Sourced by run.sh and build-image.sh.
#
#   xen-4.17   Debian 12 (bookworm): Xen 4.17, Linux 6.1, under QEMU 7.2
#   xen-4.20   Debian 13 (trixie):   Xen 4.20, Linux 6.12, under QEMU 10.0
#
# Each platform's packages come through an apt state of its own under
# $XENLAB_APT_DIR (apt-get update into a cache directory), so the host's
# apt sources are left alone and any Debian host can build either image.

XENLAB_PLATFORMS="xen-4.17 xen-4.20"
# The platforms run.sh and CI run unless XENLAB_PLATFORM names one.
XENLAB_RUN="xen-4.17 xen-4.20"
# The ones whose failure fails CI: both. xen-4.20 gates since its one
# failing item (i.nettest, a relay that gave up on a slow pipe) was
# explained and fixed (docs/XEN-4.20.md).
XENLAB_GATING="xen-4.17 xen-4.20"

# platform_vars NAME: sets suite (Debian release), xen (Xen version) and
# own_qemu: 1 if the release's own QEMU emulates the machine (fetch-qemu.sh
# unpacks it), empty for the host's (packages.txt). Xen 4.20 with Linux
# 6.12 corrupts its guests' memory under Debian 12's QEMU 7.2 (TCG) and runs
# clean under Debian 13's QEMU 10.0 (docs/XEN-4.20.md).
platform_vars() {
	case $1 in
	xen-4.17) suite=bookworm xen=4.17 own_qemu= ;;
	xen-4.20) suite=trixie xen=4.20 own_qemu=1 ;;
	*)
		echo "xenlab: unknown platform '$1' (known: $XENLAB_PLATFORMS)" >&2
		return 1
		;;
	esac
}

# debian_uri SUITE: the host's Debian mirror for SUITE from its apt sources,
# or deb.debian.org.
debian_uri() {
	local uri
	uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk -v s="$1" '$2 == s { print $1; exit }')
	uri=${uri%/}
	echo "${uri:-http://deb.debian.org/$([ "${1%-security}" != "$1" ] && echo debian-security || echo debian)}"
}

# platform_apt SUITE DIR apt-get|apt-cache ARGS...: apt with its own state
# in DIR for SUITE (plus -updates and -security); `platform_apt SUITE DIR
# update` fetches the indexes (about 15 MiB).
platform_apt() {
	local suite=$1 dir=$2 main sec
	shift 2
	if [ "$1" = update ]; then
		main=$(debian_uri bookworm)
		sec=$(debian_uri bookworm-security)
		mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
		cat >"$dir/sources.list" <<-EOS
			deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main $suite main
			deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main $suite-updates main
			deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec $suite-security main
		EOS
		set -- apt-get update -qq
	fi
	"$@" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
		-o Dir::State::status=/dev/null -o APT::Architecture=amd64 \
		-o APT::Sandbox::User=root
}

# platform_packages KIND FILE: the packages of KIND (host, boot, rootfs) in
# FILE, with @XEN@ replaced by the platform's Xen version ($xen).
platform_packages() {
	awk -v k="$1" -v x="$xen" '$1 == k { gsub(/@XEN@/, x, $2); print $2 }' "$2"
}
