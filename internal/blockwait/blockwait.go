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
// bounds how many goroutines of the process wait this way at once.
package blockwait

import "time"

// Window is how long a wait stays in a blocking system call before the
// caller should move to the runtime poller: long enough for a busy peer's
// next event (tens of microseconds on Xen hardware, about a millisecond
// under emulation), short enough that an idle connection gives its thread
// back soon. While a goroutine blocks here, other goroutines of a
// GOMAXPROCS=1 process may wait for the runtime to hand the P over, which it
// does when it sees them waiting (within its monitor's tick) or at the end
// of the window.
const Window = 2 * time.Millisecond
