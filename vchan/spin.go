package vchan

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// spin polls ready (Endpoint.Readable or Writable) for about the spin wait
// and reports whether it found progress (or an error, which the caller's
// next step reports). The peer's index is re-read with an atomic load on
// each round, as in the blocking path; nothing is written to the shared
// page, so the protocol sees a side that has not yet asked for an event.
// ready is a method value of c.ep: it does not escape and does not allocate.
// The spin also ends, reporting true, when the connection closes or the
// deadline d passes, so that the caller's next check reports it: a long
// spin wait never delays Close or outlives a deadline.
//
// The spin is bounded by a number of polls, not by the clock: under Xen PV
// the clock has no vDSO and each read of it is a system call, which costs
// as much as a whole spin on an emulated machine (docs/PERFORMANCE.md). A
// time-bounded spin there polled a few dozen times between clock reads and
// spent most of its time in the kernel.
func (c *Conn) spin(ready func() (int, error), d *deadline) bool {
	wait := time.Duration(c.spinWait.Load())
	if wait <= 0 {
		return false
	}
	polls := spinPolls(wait)
	yield := polls + 1 // never
	if runtime.GOMAXPROCS(0) == 1 {
		yield = spinPolls(spinYieldEvery)
	}
	for i := int64(1); i <= polls; i++ {
		if n, err := ready(); n > 0 || err != nil {
			return true
		}
		if i%spinCheck == 0 && (isClosed(c.closed) || isClosed(d.wait())) {
			return true
		}
		if i%yield == 0 {
			// With one P, let the process's other goroutines (the
			// in-process simulator's peer, a pipeline stage) run. With
			// more, they have other Ps, and a yield costs much more than
			// it gives: the scheduler wakes an idle thread to look for
			// work (a futex wake, clock reads, an epoll_pwait, a futex
			// sleep: each a system call, and one costs as much as a whole
			// spin under Xen PV; docs/PERFORMANCE.md).
			runtime.Gosched()
		}
	}
	return false
}

// spinYieldEvery is how often a spin lets other goroutines run, in a
// process with one P: four times in a default spin.
const spinYieldEvery = 50 * time.Microsecond

// spinCheck is how often, in polls, the spin looks for Close and the
// deadline: under a microsecond of polling on current hardware.
const spinCheck = 256

// pollsPerMs is how many polls of spin take a millisecond on this machine,
// measured once (calibrateSpin).
var (
	pollsPerMs    atomic.Int64
	calibrateOnce sync.Once
)

// spinPolls is the number of polls that take about d, at least one; d is
// taken to the microsecond and to an hour at most, so that the product
// cannot overflow.
func spinPolls(d time.Duration) int64 {
	calibrateOnce.Do(calibrateSpin)
	us := int64(min(d, time.Hour) / time.Microsecond)
	n := pollsPerMs.Load() * us / 1000
	return max(n, 1)
}

// calibrateSpin times a loop shaped like spin's (a call through a method
// value that makes two atomic loads, as Endpoint.Readable does) over at
// least a millisecond, so that the two clock reads, even as system calls,
// are a small part of what is measured. It takes about five milliseconds
// once per process.
func calibrateSpin() {
	var p calibrationProbe
	n := 1 << 10
	for timePolls(&p, n) < time.Millisecond && n < 1<<26 {
		n *= 2
	}
	// The fastest of three: a thread descheduled while it counted would
	// make every later spin too short.
	best := time.Duration(1<<63 - 1)
	for range 3 {
		best = min(best, max(timePolls(&p, n), 1))
	}
	pollsPerMs.Store(max(int64(n)*int64(time.Millisecond)/int64(best), 1))
}

// timePolls times n polls of the probe.
func timePolls(p *calibrationProbe, n int) time.Duration {
	ready := p.ready
	start := time.Now()
	for range n {
		if k, _ := ready(); k > 0 {
			break // never: the probe's indices are equal
		}
	}
	return time.Since(start)
}

// calibrationProbe stands in for a ring's two indices.
type calibrationProbe struct{ prod, cons atomic.Uint32 }

//go:noinline
func (p *calibrationProbe) ready() (int, error) {
	return int(p.prod.Load() - p.cons.Load()), nil
}
