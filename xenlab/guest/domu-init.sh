#!/bin/sh
# A domU's /init in the lab (busybox only). It loads the Xen device modules,
# announces itself in xenstore, and then serves dom0's commands:
# dom0 writes a shell command to data/cmd/<n> (n = 1, 2, ...); the domU runs
# it with its output on the console (xenconsoled keeps a log of it) and
# writes the exit status to data/rc/<n>. The command "poweroff" ends it.
export PATH=/usr/local/bin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=96m tmpfs /tmp
for m in xen-evtchn xen-gntdev xen-gntalloc; do
	modprobe "$m" || echo "XENLAB-DOMU modprobe $m failed"
done
id=$(xenstore-read domid)
echo "XENLAB-DOMU up domid=$id uptime=$(cut -d' ' -f1 /proc/uptime)"
xenstore-write data/ready 1

n=1
while :; do
	cmd=$(xenstore-read "data/cmd/$n" 2>/dev/null) || { sleep 0.1; continue; }
	[ "$cmd" = poweroff ] && break
	echo "XENLAB-DOMU cmd $n: $cmd"
	(cd /tmp && sh -c "$cmd")
	rc=$?
	echo "XENLAB-DOMU cmd $n rc=$rc"
	xenstore-write "data/rc/$n" "$rc"
	n=$((n + 1))
done
echo "XENLAB-DOMU poweroff"
poweroff -f
