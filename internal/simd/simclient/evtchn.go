//go:build linux

package simclient

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/blockwait"
	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// device is the client's evtchn.Device.
type device struct {
	d      *Domain
	mu     sync.Mutex
	closed bool
}

// BindUnbound allocates a port that only domain remote may bind to.
func (dv *device) BindUnbound(remote uint16) (evtchn.Channel, error) {
	return dv.bind(simproto.Msg(nil).U32(simproto.OpBindUnbound, uint32(remote)))
}

// BindInterdomain connects a new local port to remotePort of domain
// remote, which must be unbound and offered to this domain (else the error
// wraps evtchn.ErrNotBindable).
func (dv *device) BindInterdomain(remote uint16, remotePort evtchn.Port) (evtchn.Channel, error) {
	return dv.bind(simproto.Msg(nil).U32(simproto.OpBindInterdomain, uint32(remote), uint32(remotePort)))
}

// bind binds a port through the process's connection. The reply carries
// the port's two bells (simproto's package comment): the channel waits on
// in and rings out, so an event goes from process to process without the
// daemon.
func (dv *device) bind(req simproto.Msg) (evtchn.Channel, error) {
	dv.mu.Lock()
	closed := dv.closed
	dv.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("vchan simulator: bind in domain %d: device closed: %w", dv.d.domid, evtchn.ErrClosed)
	}
	d := dv.d
	p, fds, err := d.call("bind", req)
	if err != nil {
		return nil, err
	}
	port := evtchn.Port(p.U32())
	if p.Bad || len(fds) != 2 {
		closeAll(fds)
		return nil, fmt.Errorf("vchan simulator: bind: bad reply (%d descriptors)", len(fds))
	}
	// The daemon made both bells non-blocking. Neither is in the runtime
	// poller, which every event would wake while Wait blocks in ppoll and
	// every Notify would wake through out; a wait in the poller opens the
	// gate to in (internal/blockwait).
	c, err := newChannel(d, port, fds)
	if err != nil {
		return nil, fmt.Errorf("vchan simulator: bind: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.lost != nil {
		c.closeBells()
		if d.closed {
			return nil, d.closedError()
		}
		return nil, d.lost
	}
	d.ports[port] = c // for Close and loss of the process's connection
	return c, nil
}

// newChannel makes the channel of port over its bells, fds (in, out), which
// it closes on error.
func newChannel(d *Domain, port evtchn.Port, fds []int) (*channel, error) {
	// out stays a bare descriptor: blockwait.Unpolled would make it
	// blocking for a moment, and it is the remote process's in bell, which
	// that process may be reading. in is read by this process alone.
	c := &channel{d: d, port: port, out: fds[1]}
	var err error
	if c.in, err = blockwait.Unpolled(fds[0], "vchan-sim-bell-in"); err != nil {
		unix.Close(c.out)
		return nil, err
	}
	if c.gate, err = blockwait.NewGate(fds[0], "vchan-sim-bell-in"); err == nil {
		c.raw, err = c.in.SyscallConn()
	}
	if err != nil {
		c.closeBells()
		return nil, err
	}
	c.blockStep, c.pollTake = c.waitInPpoll, c.takeFromPoller
	// The blocking phase of Wait; without it (no descriptor left for the
	// eventfd) every wait uses the poller.
	c.waiter, _ = blockwait.New()
	return c, nil
}

// Close marks the device closed: further binds fail with an error wrapping
// evtchn.ErrClosed. Channels bound through it stay usable until closed.
func (dv *device) Close() error {
	dv.mu.Lock()
	defer dv.mu.Unlock()
	if dv.closed {
		return fmt.Errorf("vchan simulator: close event channel device of domain %d: %w", dv.d.domid, evtchn.ErrClosed)
	}
	dv.closed = true
	return nil
}

// channel is the client's evtchn.Channel.
type channel struct {
	d    *Domain
	port evtchn.Port
	// in is the port's bell (an eventfd): the remote end's process, or
	// the daemon, adds to it to raise an event; reading it takes the
	// pending events and unmasks the port. out is the remote end's bell,
	// written under mu (shared) while the channel is open. Neither is in
	// the runtime poller: gate lets it see in.
	in   *os.File
	out  int
	gate *blockwait.Gate

	interrupted atomic.Bool // see Interrupt
	buf         [8]byte     // for Wait, which one goroutine at a time calls

	// The blocking phase of Wait (internal/blockwait) runs blockStep on the
	// bell's descriptor; the step's input and results are fields, so that
	// the method value is made once and no Wait allocates.
	waiter    *blockwait.Waiter // nil: every wait uses the poller
	raw       syscall.RawConn
	blockStep func(fd uintptr)
	pollTake  func(fd uintptr) bool // the poller phase's step
	pollErr   error
	window    time.Duration
	stepRes   blockwait.Result
	stepErr   error

	mu     sync.RWMutex // Notify holds it shared, Close exclusively
	closed bool
}

// LocalPort is this domain's end of the channel.
func (c *channel) LocalPort() evtchn.Port { return c.port }

// Wait blocks until the port's bell rings (and takes its events, which
// unmasks the port, as reading /dev/xen/evtchn and writing the port back
// does), Interrupt is called, or the deadline passes: first in ppoll for
// up to blockwait.Window, then in the runtime poller.
func (c *channel) Wait(deadline time.Time) error {
	if err := c.d.usable(); err != nil {
		return err
	}
	if c.interrupted.Swap(false) {
		c.clearWake()
		return c.d.usable()
	}
	if done, err := c.waitBlocking(deadline); done {
		return err
	}
	if err := c.gate.Open(); err != nil {
		return c.failed(err)
	}
	defer c.gate.Shut()
	if err := c.gate.SetDeadline(deadline); err != nil {
		return c.failed(err)
	}
	if c.interrupted.Swap(false) {
		c.clearWake()
		return c.d.usable()
	}
	c.pollErr = nil
	err := c.gate.Wait(c.pollTake)
	if err == nil {
		if c.pollErr != nil {
			return c.failed(c.pollErr)
		}
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.interrupted.Swap(false) {
			// Interrupt, or the loss of the daemon, which sets the
			// error before it interrupts every channel: report it,
			// so a waiter never takes the loss for an event.
			c.clearWake()
			return c.d.usable()
		}
		return os.ErrDeadlineExceeded
	}
	return c.failed(err)
}

// blockingWindow is blockwait.Window; a variable for the tests.
var blockingWindow = blockwait.Window

// waitBlocking is Wait's first phase: ppoll on the bell until an event, an
// Interrupt, the deadline or the end of the window. It reports done false
// when the wait must go on in the runtime poller.
func (c *channel) waitBlocking(deadline time.Time) (done bool, err error) {
	if c.waiter == nil || !blockwait.Acquire() {
		return false, nil
	}
	defer blockwait.Release()
	var ok bool
	if c.window, ok = blockwait.Budget(blockingWindow, deadline); !ok {
		return false, nil
	}
	// Control holds the bell open while the step runs.
	if err := c.raw.Control(c.blockStep); err != nil {
		return false, nil // closed: the poller's path reports why
	}
	switch c.stepRes {
	case blockwait.Timeout:
		return false, nil
	case blockwait.Woken:
		c.interrupted.Store(false)
		return true, c.d.usable()
	}
	if c.stepErr != nil {
		return true, c.failed(c.stepErr)
	}
	return true, nil
}

// waitInPpoll is the blocking step: it waits, then takes the bell's events.
func (c *channel) waitInPpoll(fd uintptr) {
	c.stepRes, c.stepErr = c.waiter.Wait(int(fd), c.window)
	if c.stepErr != nil {
		c.stepRes = blockwait.Timeout
		return
	}
	if c.stepRes != blockwait.Readable {
		return
	}
	_, c.stepErr = c.take(int(fd)) // not taken: a spurious wake-up
}

// takeFromPoller is the poller phase's step: it takes the bell's events,
// and reports false (wait on) when there are none.
func (c *channel) takeFromPoller(fd uintptr) bool {
	taken, err := c.take(int(fd))
	c.pollErr = err
	return taken
}

// take reads the bell's events, which unmasks the port. It reports taken
// false when there are none (EAGAIN); any error is final for this Wait.
func (c *channel) take(fd int) (taken bool, err error) {
	for {
		_, err := unix.Read(fd, c.buf[:])
		switch err {
		case nil:
			return true, nil // an eventfd read is all 8 bytes or an error
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false, nil
		}
		return true, err
	}
}

// clearWake forgets the Interrupt that Wait has just reported, so that the
// next Wait's blocking phase does not report it again.
func (c *channel) clearWake() {
	if c.waiter != nil {
		c.waiter.Clear()
	}
}

// Interrupt ends the current Wait, or makes the next one return at once.
func (c *channel) Interrupt() {
	c.interrupted.Store(true)
	if c.waiter != nil {
		c.waiter.Wake()
	}
	c.gate.SetDeadline(aLongTimeAgo)
}

// aLongTimeAgo is a deadline in the past, which wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// failed reports a bell that failed: closed by Close, or the connection
// to the daemon is closed or lost.
func (c *channel) failed(cause error) error {
	if err := c.d.usable(); err != nil {
		return err
	}
	if errors.Is(cause, os.ErrClosed) {
		return fmt.Errorf("vchan simulator: port %d of domain %d: %w", c.port, c.d.domid, evtchn.ErrClosed)
	}
	return fmt.Errorf("vchan simulator: port %d of domain %d: event: %w", c.port, c.d.domid, cause)
}

// Notify raises an event on the remote end: one write(2) to its bell, which
// wakes the remote's process without the daemon. If the remote end is not
// bound (yet, or any more), nobody reads the bell, as Xen drops the event;
// a later binding to this port finds it pending, as Xen marks a freshly
// bound port. The bell never blocks (a saturated count cannot be reached).
func (c *channel) Notify() error {
	if err := c.d.notifiable(); err != nil {
		return err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return c.failed(os.ErrClosed)
	}
	for {
		_, err := unix.Write(c.out, simproto.BellRing[:])
		switch err {
		case nil, unix.EAGAIN:
			// EAGAIN: the bell holds the most an eventfd can count,
			// which is still an event pending.
			return nil
		case unix.EINTR:
			continue
		}
		return c.failed(err)
	}
}

// Close unbinds the port; the remote end becomes unbound. A second Close
// returns an error wrapping evtchn.ErrClosed.
func (c *channel) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("vchan simulator: close port %d of domain %d: %w", c.port, c.d.domid, evtchn.ErrClosed)
	}
	c.closed = true
	c.mu.Unlock()
	d := c.d
	d.mu.Lock()
	if d.ports[c.port] == c {
		delete(d.ports, c.port)
	}
	d.mu.Unlock()
	_, _, err := d.call("unbind", simproto.Msg(nil).U32(simproto.OpUnbind, uint32(c.port)))
	c.closeBells()
	return err
}

// closeBells closes the channel's descriptors.
func (c *channel) closeBells() {
	if c.gate != nil {
		c.gate.Close()
	}
	c.in.Close()
	unix.Close(c.out)
	if c.waiter != nil {
		c.waiter.Close()
	}
}
