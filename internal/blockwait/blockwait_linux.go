//go:build linux

package blockwait

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Waiter waits for one descriptor at a time with ppoll. It owns an eventfd
// through which Wake ends a wait from another goroutine. One goroutine at a
// time may call Wait; Wake may be called from any goroutine at any time.
type Waiter struct {
	efd   int
	woken atomic.Bool // Wake was called and not yet seen by Wait
	buf   [8]byte
}

// New returns a Waiter, or an error if the process has no descriptor left
// for its eventfd.
func New() (*Waiter, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &Waiter{efd: efd}, nil
}

// Result says how a Wait ended.
type Result int

const (
	// Readable: fd has data (or an error or hang-up to report).
	Readable Result = iota
	// Woken: Wake was called.
	Woken
	// Timeout: the time given passed.
	Timeout
)

// Wait blocks until fd is readable, Wake is called, or timeout passes.
func (w *Waiter) Wait(fd int, timeout time.Duration) (Result, error) {
	if w.woken.Swap(false) {
		w.drain()
		return Woken, nil
	}
	fds := [2]unix.PollFd{
		{Fd: int32(fd), Events: unix.POLLIN},
		{Fd: int32(w.efd), Events: unix.POLLIN},
	}
	ts := unix.NsecToTimespec(int64(max(timeout, 0)))
	n, err := unix.Ppoll(fds[:], &ts, nil)
	for err == unix.EINTR {
		// A signal cut the wait short: the Go runtime's preemption signal
		// (SIGURG) lands on a thread that has just entered ppoll often
		// enough, at every GC. Linux's ppoll leaves the time still to
		// wait in ts, so the wait goes on without a clock read.
		n, err = unix.Ppoll(fds[:], &ts, nil)
	}
	switch {
	case err != nil:
		return Timeout, err
	case n == 0:
		return Timeout, nil
	case fds[1].Revents != 0 && w.woken.Swap(false):
		w.drain()
		return Woken, nil
	case fds[0].Revents != 0:
		return Readable, nil
	}
	// The eventfd held a count left by a Wake that an earlier Wait already
	// reported: clear it and report a timeout, which the caller treats as
	// a short wait that found nothing.
	w.drain()
	return Timeout, nil
}

// drain resets the eventfd's count.
func (w *Waiter) drain() {
	_, _ = unix.Read(w.efd, w.buf[:])
}

// Wake ends the current Wait, or makes the next one return Woken at once.
func (w *Waiter) Wake() {
	w.woken.Store(true)
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(w.efd, one[:]) // EAGAIN only if the count is huge: still readable
}

// Clear forgets a Wake that has not ended a Wait, for a caller that saw
// the wake-up some other way.
func (w *Waiter) Clear() {
	if w.woken.Swap(false) {
		w.drain()
	}
}

// Close releases the eventfd. No Wait may be in progress.
func (w *Waiter) Close() error {
	return unix.Close(w.efd)
}

// limit bounds the goroutines of the process in a blocking wait at once:
// each holds an OS thread, and a server with thousands of connections must
// not hold thousands. Beyond it, waits go to the runtime poller at once.
var (
	limit  = int64(max(2, runtime.NumCPU()))
	active atomic.Int64
)

// Acquire reserves a blocking wait for the caller; it reports false when
// the process already has its share, or has one P (see the package
// comment), and the caller should then wait in the runtime poller. A true
// result must be paired with Release.
func Acquire() bool {
	if runtime.GOMAXPROCS(0) == 1 {
		return false
	}
	if active.Add(1) > limit {
		active.Add(-1)
		return false
	}
	return true
}

// Release returns what Acquire reserved.
func Release() { active.Add(-1) }
