#!/usr/bin/env bash
# Builds one platform's boot images (platform.sh) from Debian's packages
# into a directory:
#   xen.elf            the hypervisor (multiboot ELF, booted by QEMU -kernel)
#   vmlinuz            the Debian kernel for dom0
#   vmlinux            the same kernel unpacked, for fast PV domU boots
#   dom0-initrd.gz     the dom0 root: Debian + the Xen toolstack + vchan-ref
#   domu-base.cpio     the domU root: busybox, xenstore tools, vchan-ref
#   manifest.txt       the versions of every package inside
# Usage: xenlab/build-image.sh PLATFORM OUTDIR APTDIR
#   (needs root: debootstrap, chroot; APTDIR is the platform's apt state,
#   fetched here if it has no indexes yet)
# run.sh calls it when the inputs' hash changed; it always starts afresh.
# shellcheck disable=SC2016 # dpkg-query and apt formats are literal
set -euo pipefail

platform=${1:?usage: build-image.sh PLATFORM OUTDIR APTDIR}
out=${2:?usage: build-image.sh PLATFORM OUTDIR APTDIR}
aptdir=${3:?usage: build-image.sh PLATFORM OUTDIR APTDIR}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=xenlab/platform.sh
. "$here/platform.sh"
platform_vars "$platform"
work="$out.work"
rm -rf "$work" "$out"
mkdir -p "$work"
t0=$(date +%s)
step() { echo "xenlab: build $platform: $* (+$(($(date +%s) - t0)) s)" >&2; }

main_uri=$(debian_uri bookworm)
sec_uri=$(debian_uri bookworm-security)
[ -d "$aptdir/lists" ] || platform_apt "$suite" "$aptdir" update
papt() { platform_apt "$suite" "$aptdir" "$@"; }

pkgs() { platform_packages "$1" "$here/packages.txt"; }

# 1. The hypervisor and the kernel, unpacked from their packages.
step "downloading boot packages ($suite)"
kpkg=$(papt apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
hvpkg=xen-hypervisor-$xen-amd64
(cd "$work" && papt apt-get download -q "$hvpkg" "$kpkg" >/dev/null)
mkdir -p "$work/x"
for d in "$work"/*.deb; do dpkg -x "$d" "$work/x"; done
kver=${kpkg#linux-image-}
gunzip -c "$work/x/boot/xen-$xen-amd64.gz" >"$work/xen.elf"
cp "$work/x/boot/vmlinuz-$kver" "$work/vmlinuz"
# The bzImage's payload (its offset and length are in the setup header);
# bookworm's kernels compress it with xz, trixie's with zstd.
python3 - "$work/vmlinuz" "$work/vmlinux" <<'PY'
import lzma, struct, subprocess, sys
data = open(sys.argv[1], "rb").read()
setup = (data[0x1f1] or 4) + 1
off, length = struct.unpack_from("<II", data, 0x248)
payload = data[setup * 512 + off:setup * 512 + off + length]
if payload.startswith(b"\xfd7zXZ\x00"):
    out = lzma.LZMADecompressor().decompress(payload)
elif payload.startswith(b"\x28\xb5\x2f\xfd"):
    # (the kernel's build appends the unpacked size, 4 bytes, to the frame)
    out = subprocess.run(["zstd", "-dcq"], input=payload[:-4], stdout=subprocess.PIPE, check=True).stdout
else:
    sys.exit("the bzImage's payload is neither xz nor zstd: %r" % payload[:6])
if not out.startswith(b"\x7fELF"):
    sys.exit("the bzImage's payload is not an ELF kernel")
open(sys.argv[2], "wb").write(out)
PY

# 2. The dom0 root.
step "debootstrap $main_uri"
root="$work/rootfs"
include=$(pkgs rootfs | paste -sd, -)
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$main_uri" >"$work/debootstrap.log" 2>&1 ||
	{ tail -30 "$work/debootstrap.log" >&2; exit 1; }
cleanup() { umount "$root/proc" 2>/dev/null || true; }
trap cleanup EXIT
mount -t proc proc "$root/proc"
cat >"$root/etc/apt/sources.list" <<EOF
deb $main_uri $suite main
deb $main_uri $suite-updates main
deb $sec_uri $suite-security main
EOF
step "upgrading the root from $suite-updates and $suite-security"
# (xen-utils' postinst says "Can't find hypervisor information in sysfs"
# in a chroot; harmless.)
chroot "$root" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get -y -q upgrade' >"$work/upgrade.log" 2>&1 ||
	{ tail -30 "$work/upgrade.log" >&2; exit 1; }
hv=$(dpkg-deb -f "$work/$hvpkg"_*.deb Version)
tools=$(chroot "$root" dpkg-query -W -f '${Version}' "xen-utils-$xen")
if [ "$hv" != "$tools" ]; then
	echo "xenlab: build: hypervisor $hv but toolstack $tools: they must match" >&2
	exit 1
fi
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$work/manifest.txt"
{
	echo "boot $hvpkg $hv"
	echo "boot $kpkg $(dpkg-deb -f "$work/${kpkg}"_*.deb Version)"
} >>"$work/manifest.txt"

step "building vchan-ref"
cp "$here/guest/vchan-ref.c" "$root/tmp/"
chroot "$root" gcc -O2 -Wall -o /usr/local/bin/vchan-ref /tmp/vchan-ref.c -lxenvchan
cp "$(command -v busybox)" "$root/usr/local/bin/busybox"
umount "$root/proc"

# 3. Kernel modules: only what the lab loads, and their dependencies.
step "kernel modules"
modules=(xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd virtio_pci 9pnet_virtio 9p)
# (trixie's kernel package keeps them under /usr/lib/modules)
if [ ! -d "$work/x/lib/modules" ] && [ -d "$work/x/usr/lib/modules" ]; then
	mkdir -p "$work/x/lib"
	mv "$work/x/usr/lib/modules" "$work/x/lib/modules"
fi
depmod -b "$work/x" "$kver"
mkdir -p "$root/lib/modules/$kver"
cp "$work/x/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
for f in $(for m in "${modules[@]}"; do modprobe -d "$work/x" -S "$kver" --show-depends "$m"; done | awk '$1 == "insmod" { print $2 }' | sort -u); do
	rel=${f#"$work/x"}
	mkdir -p "$root$(dirname "$rel")"
	cp "$f" "$root$rel"
done
depmod -b "$root" "$kver"

# 4. The domU root: busybox, the xenstore tools and vchan-ref with their
# libraries, the modules.
step "domU root"
u="$work/domu"
mkdir -p "$u"/{bin,sbin,usr/local/bin,proc,sys,dev,tmp,etc,lib64}
cp "$(command -v busybox)" "$u/bin/busybox"
for a in $("$u/bin/busybox" --list); do
	[ -e "$u/bin/$a" ] || ln -s busybox "$u/bin/$a"
done
cp "$root/usr/local/bin/vchan-ref" "$u/usr/local/bin/"
cp -P "$root"/usr/bin/xenstore* "$u/usr/local/bin/"
libs=$(chroot "$root" sh -c 'ldd /usr/local/bin/vchan-ref /usr/bin/xenstore' | awk '/=> \// { print $3 } /^\t\/lib64/ { print $1 }' | sort -u)
for l in $libs /lib/x86_64-linux-gnu/libgcc_s.so.1; do
	mkdir -p "$u$(dirname "$l")"
	cp -L "$root$l" "$u$l"
done
cp -a "$root/lib/modules" "$u/lib/"
# busybox's modprobe reads modules.dep like kmod's.
install -m 755 "$here/guest/domu-init.sh" "$u/init"
(cd "$u" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/domu-base.cpio"

# 5. The dom0 initramfs: the root without docs, caches and the compiler.
step "dom0 initramfs"
rm -rf "$root"/usr/share/{doc,man,info,locale} "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
	"$root"/usr/lib/gcc "$root"/usr/libexec/gcc "$root"/usr/include "$root"/tmp/*
install -m 755 "$here/guest/dom0-init.sh" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/dom0-initrd.gz"

mkdir -p "$out"
mv "$work"/{xen.elf,vmlinuz,vmlinux,dom0-initrd.gz,domu-base.cpio,manifest.txt} "$out/"
echo "$kver" >"$out/kernel-version"
trap - EXIT
rm -rf "$work"
step "done: $(du -sh "$out" | cut -f1) in $out"
