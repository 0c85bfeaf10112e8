#!/bin/sh
# dom0's /init (PID 1) in the lab: brings up the Xen devices, xenstored and
# xenconsoled, mounts the host's share on /share, runs /share/run.sh with
# its output on the console and in /share/run.out, and powers off.
# Every line meant for the host starts with "XENLAB".
# /usr/lib/xen-<version>/bin: the toolstack of whichever platform this is.
xenbin=$(echo /usr/lib/xen-[0-9]*/bin)
export PATH=$xenbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o size=512m tmpfs /tmp

die() {
	echo "XENLAB-FATAL $*"
	sleep 1
	/usr/local/bin/busybox poweroff -f
}

echo "XENLAB-DOM0-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd virtio_pci 9pnet_virtio 9p; do
	modprobe "$m" || die "modprobe $m failed"
done
mount -t xenfs xenfs /proc/xen || die "mount xenfs"
mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /share || die "mount 9p share"

mkdir -p /run/xenstored /var/log/xen/console /run/xen /var/lib/xen /share/logs
# PLAN=domus hunts a rare failure (docs/XEN-4.20.md): oxenstored then also
# logs reads, transactions and watches in /var/log/xen/xenstored-access.log.
if [ "${PLAN:-}" = domus ]; then
	printf '%s\n' 'access-log-read-ops = true' 'access-log-transactions-ops = true' \
		'access-log-special-ops = true' >>/etc/xen/oxenstored.conf
fi
# XENSTORED=xenstored in the kernel command line picks C xenstored.
case "${XENSTORED:-oxenstored}" in
xenstored) XENSTORED_ROOTDIR=/run/xenstored xenstored --pid-file /run/xenstore.pid ;;
*) XENSTORED_ROOTDIR=/run/xenstored oxenstored --pid-file /run/xenstore.pid ;;
esac
i=0
until xenstore-read -s / >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -lt 300 ] || die "xenstored did not come up in 30 s"
	sleep 0.1
done
xen-init-dom0 >/dev/null || die "xen-init-dom0 failed"
xenconsoled --pid-file /run/xenconsoled.pid --log=guest --log-dir=/share/logs || die "xenconsoled"
echo "XENLAB-DOM0-READY uptime=$(cut -d' ' -f1 /proc/uptime) xenstored=${XENSTORED:-oxenstored}"

if [ -x /share/run.sh ]; then
	/share/run.sh 2>&1 | tee /share/run.out
else
	echo "XENLAB-FATAL /share/run.sh missing"
fi
sync
echo "XENLAB-POWEROFF uptime=$(cut -d' ' -f1 /proc/uptime)"
/usr/local/bin/busybox poweroff -f
