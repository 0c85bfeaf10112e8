#!/bin/sh
# A domU's /init in the lab (busybox only). It loads the Xen device modules,
# announces itself in xenstore, and then serves dom0's commands:
# dom0 writes a time limit in seconds to data/limit/<n> and a shell command
# to data/cmd/<n> (n = 1, 2, ...); the domU runs it with its output on the
# console (xenconsoled keeps a log of it) and writes the exit status to
# data/rc/<n>. A command still running at its limit is reported (what each
# of its processes is blocked on, then Go's goroutine dump via SIGQUIT),
# killed, and gets rc 124; the next command runs regardless. The command
# "poweroff" ends it.
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

# hung PGID: what every process of the group is doing, on the console.
hung() {
	for d in /proc/[0-9]*; do
		[ "$(cut -d' ' -f5 "$d/stat" 2>/dev/null)" = "$1" ] || continue
		echo "XENLAB-DOMU hung: pid ${d#/proc/} [$(tr '\0' ' ' <"$d/cmdline")] $(grep '^State' "$d/status" | tr -s '\t ' ' ')"
		for t in "$d"/task/*; do
			echo "XENLAB-DOMU   thread ${t##*/}: wchan $(cat "$t/wchan" 2>/dev/null); $(tr '\n' ' ' <"$t/stack" 2>/dev/null | cut -c1-300)"
		done
	done
}

n=1
while :; do
	cmd=$(xenstore-read "data/cmd/$n" 2>/dev/null) || { sleep 0.1; continue; }
	[ "$cmd" = poweroff ] && break
	limit=$(xenstore-read "data/limit/$n" 2>/dev/null) || limit=300
	echo "XENLAB-DOMU cmd $n (limit $limit s): $cmd"
	rm -f "/tmp/.rc"
	# The command runs in its own process group (setsid), so that a hung
	# one can be killed whole; the outer sh records its status.
	cd /tmp
	setsid sh -c 'sh -c "$1"; echo $? >/tmp/.rc' sh "$cmd" &
	pid=$!
	end=$(($(date +%s) + limit))
	while [ ! -f /tmp/.rc ] && [ "$(date +%s)" -lt "$end" ]; do
		sleep 0.1
	done
	if [ -f /tmp/.rc ]; then
		wait "$pid"
		rc=$(cat /tmp/.rc)
	else
		pg=$(cut -d' ' -f5 "/proc/$pid/stat" 2>/dev/null)
		echo "XENLAB-DOMU cmd $n still running after $limit s: killing process group $pg"
		hung "$pg"
		kill -QUIT "-$pg" 2>/dev/null
		sleep 3
		kill -KILL "-$pg" 2>/dev/null
		wait "$pid"
		rc=124
	fi
	echo "XENLAB-DOMU cmd $n rc=$rc"
	xenstore-write "data/rc/$n" "$rc"
	n=$((n + 1))
done
echo "XENLAB-DOMU poweroff"
poweroff -f
