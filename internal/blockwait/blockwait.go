// Package blockwait waits for a descriptor to become readable inside one
// blocking system call (ppoll), for a short window, and can be woken from
// another goroutine.
//
// Go's runtime poller is the right place for a descriptor that stays idle:
// it costs no thread. For an event channel that fires every few hundred
// microseconds it is an expensive place. Each wait there tries a read that
// fails (EAGAIN), parks the goroutine, lets every P go idle so that the
// runtime's monitor thread (sysmon) goes to deep sleep, polls epoll, and on
// the way back wakes sysmon with a futex. Under Xen a system call costs a
// hypercall's worth of time and the clock has no vDSO, so that dance made
// 14 to 19 system calls per wake-up where libxenvchan makes 3
// (docs/PERFORMANCE.md has the counts). A goroutine blocked in ppoll keeps
// its P (the runtime takes it back only if other work waits), sysmon stays
// awake, and the wake-up costs the ppoll and the read that follows.
//
// A blocking wait holds an OS thread, so a Waiter is used for a short window
// only (the caller moves on to the runtime poller after it), and Acquire
// bounds how many goroutines of the process wait this way at once. The
// descriptor itself stays out of the runtime poller (Unpolled), which would
// otherwise be woken by each of its events too; a Gate shows it to the
// poller for the waits that move there.
//
// A process with one P (GOMAXPROCS=1, the default on a one-vCPU domain) does
// not wait this way at all: the blocked goroutine holds the only P, so the
// process's other goroutines, and the poller that would wake them, wait
// for the runtime's monitor or for the window to end. Measured on the lab's
// Xen 4.20 between two one-vCPU domUs, in one boot with runs alternating,
// nettest's PingPong through a relay (1000 round trips, four event-channel
// hops each) took a median 17.8 s with this phase and 12.2 s without, and
// bulk transfers to and from such a domU ran 1.2-2.5 times faster
// (docs/PERFORMANCE.md); kill -9 between two such domUs was seen no later
// (64 kills, one boot, docs/XEN-4.20.md).
package blockwait

import "time"

// Window is how long a wait stays in a blocking system call before the
// caller should move to the runtime poller: long enough for a busy peer's
// next event (tens of microseconds on Xen hardware; in the lab's emulated
// Xen a one-way wake-up took about 2.3 ms with a 2 ms window, which sent
// most waits to the poller and kept them slow, docs/PERFORMANCE.md), short
// enough that an idle connection gives its thread back soon, and under the
// 10 ms after which the runtime takes the P of a thread in a system call
// away.
const Window = 5 * time.Millisecond

// Budget is how long a blocking wait may last: window, or less if deadline
// (the zero time: none) comes first. ok is false when the deadline has
// passed and the wait should not block at all.
func Budget(window time.Duration, deadline time.Time) (d time.Duration, ok bool) {
	if !deadline.IsZero() {
		window = min(window, time.Until(deadline))
	}
	return window, window > 0
}
