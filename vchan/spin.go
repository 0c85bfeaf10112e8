package vchan

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vchan-go/vchan/internal/ring"
)

// spin polls ready (Endpoint.Readable or Writable) for about the spin wait
// and reports whether it found progress (or an error, which the caller's
// next step reports). The peer's index is re-read with an atomic load on
// each round, as in the blocking path; nothing is written to the shared
// page, so the protocol sees a side that has not yet asked for an event.
// ready is a method value of c.ep: it does not escape and does not allocate.
// The spin also ends, reporting true, when the connection closes, the
// deadline d passes or the peer's live byte says it is gone, so that the
// caller's next check reports it: a long spin wait never delays Close,
// outlives a deadline or hides a peer's death.
//
// The spin is bounded by a number of polls, not by the clock: under Xen PV
// the clock has no vDSO and each read of it is a system call, which costs
// as much as a whole spin on an emulated machine (docs/PERFORMANCE.md). A
// time-bounded spin there polled a few dozen times between clock reads and
// spent most of its time in the kernel. The clock is still read every
// spinClockCheck polls, a backstop should the count be far too large for
// this connection's polls (a calibration that met a stalled clock, a ring
// whose memory is slow to read).
func (c *Conn) spin(ready func() (int, error), d *deadline) bool {
	wait := time.Duration(c.spinWait.Load())
	if wait <= 0 {
		return false
	}
	polls := spinPolls(wait)
	// Everything but the poll itself happens every spinCheck polls, so
	// that the loop makes no division; yield is a multiple of spinCheck.
	yield := polls + spinCheck // never
	if runtime.GOMAXPROCS(0) == 1 {
		yield = max(spinYieldPolls()/spinCheck, 1) * spinCheck
	}
	var mark time.Duration
	for i := int64(1); i <= polls; i++ {
		if n, err := ready(); n > 0 || err != nil {
			return true
		}
		if i%spinCheck != 0 {
			continue
		}
		if c.spinInterrupted(d) {
			return true
		}
		if i%spinClockCheck == 0 {
			now := time.Since(monoBase)
			if mark == 0 {
				mark = now
			} else if now-mark >= wait {
				return false
			}
		}
		if i%yield == 0 {
			// With one P, let the process's other goroutines (the
			// in-process simulator's peer, a pipeline stage) run. With
			// more, they have other Ps, and a yield costs much more than
			// it gives: the scheduler wakes an idle thread to look for
			// work (a futex wake, clock reads, an epoll_pwait, a futex
			// sleep: each a system call, and one costs as much as a whole
			// spin under Xen PV; docs/PERFORMANCE.md). With one P the
			// yields are spaced so that they cost a small part of the
			// spin (spinYieldPolls).
			runtime.Gosched()
		}
	}
	return false
}

// spinInterrupted reports whether the spin should stop for the caller to
// look: the connection closed, the deadline passed, or the peer's live byte
// is no longer open. (ep is nil only in the spin's unit tests.)
func (c *Conn) spinInterrupted(d *deadline) bool {
	return isClosed(c.closed) || isClosed(d.wait()) || (c.ep != nil && c.ep.PeerLive() != ring.LiveOpen)
}

// spinClockCheck is how often, in polls, the spin reads the clock: a
// multiple of spinCheck.
const spinClockCheck = 1 << 16

// monoBase is the origin of spin's clock: time.Since of a time with a
// monotonic reading reads only the monotonic clock, where time.Now reads the
// wall clock too.
var monoBase = time.Now()

// spinYieldEvery is how often a spin lets other goroutines run, in a
// process with one P, where a yield is cheap: four times in a default spin.
const spinYieldEvery = 50 * time.Microsecond

// spinYieldShare bounds what yields may cost: at most one part in this
// many of the time spent spinning. A yield with nothing else to run costs
// a few hundred nanoseconds on Linux; in a Xen PV guest the scheduler's
// clock read and network poll are system calls, and on the lab's emulated
// machine a yield cost more than the 50 µs of polling between two
// (docs/PERFORMANCE.md), so the one-P receiver spent its spin yielding.
const spinYieldShare = 10

// spinYieldMax is the longest a one-P spin polls without yielding, however
// dear a yield: the runtime preempts a goroutine after 10 ms anyway.
const spinYieldMax = 10 * time.Millisecond

// spinYieldPolls is how many polls a spin makes between two yields in a
// process with one P: spinYieldEvery, or longer where a yield is dear.
func spinYieldPolls() int64 {
	calibrateOnce.Do(calibrateSpin)
	return max(spinPolls(spinYieldEvery), min(yieldPolls.Load(), spinPolls(spinYieldMax)))
}

// spinCheck is how often, in polls, the spin looks for Close and the
// deadline: under a microsecond of polling on current hardware.
const spinCheck = 256

// pollsPerMs is how many polls of spin take a millisecond on this machine,
// measured once (calibrateSpin).
var (
	pollsPerMs    atomic.Int64
	yieldPolls    atomic.Int64 // polls that take spinYieldShare yields
	calibrateOnce sync.Once
)

// maxPollsPerMs bounds the calibration: half a nanosecond per poll (a call
// and an atomic load) is faster than any machine this runs on.
const maxPollsPerMs = 2_000_000

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
	// The median of three: a thread descheduled while it counted makes one
	// measurement too slow, a clock that stalls (Xen's PV clock keeps
	// itself monotonic by repeating its last value) one too fast.
	var t [3]time.Duration
	for i := range t {
		t[i] = max(timePolls(&p, n), 1)
	}
	slices.Sort(t[:])
	perMs := min(max(int64(n)*int64(time.Millisecond)/int64(t[1]), 1), maxPollsPerMs)
	pollsPerMs.Store(perMs)
	yieldPolls.Store(perMs * int64(spinYieldShare*timeYield()) / int64(time.Millisecond))
}

// timeYield measures what runtime.Gosched costs here: the fastest of three
// batches, since other goroutines that run during a yield make it look
// dearer than it is. If they run during all three, the spin yields less
// often than it could: at worst not within one spin wait (and at least
// every spinYieldMax), which is what it does with more than one P.
func timeYield() time.Duration {
	const batch = 8
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		for range batch {
			runtime.Gosched()
		}
		best = min(best, time.Since(start))
	}
	return best / batch
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
