//go:build linux

package simclient

import (
	"errors"
	"fmt"
	"io"
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

// bind binds a port on a daemon connection of its own, as libxenvchan
// opens a /dev/xen/evtchn handle per connection: the port's events then
// arrive on a socket of their own, which the waiting goroutine reads itself
// (evtchn.Channel.Wait), with no router goroutine in between.
func (dv *device) bind(req simproto.Msg) (evtchn.Channel, error) {
	dv.mu.Lock()
	closed := dv.closed
	dv.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("vchan simulator: bind in domain %d: device closed: %w", dv.d.domid, evtchn.ErrClosed)
	}
	d := dv.d
	if err := d.usable(); err != nil {
		return nil, err
	}
	own, err := dialDaemon(d.dir, d.domid)
	if errors.Is(err, ErrNotRunning) {
		// This process was connected, so the daemon has gone away (its
		// loss may not have been noticed on the process's connection yet).
		d.mu.Lock()
		defer d.mu.Unlock()
		return nil, d.ioErrorLocked("bind", err)
	}
	if err != nil {
		return nil, err
	}
	p, fds, err := own.call("bind", req)
	if err != nil {
		own.Close()
		return nil, err
	}
	closeAll(fds)
	port := evtchn.Port(p.U32())
	if p.Bad {
		own.Close()
		return nil, fmt.Errorf("vchan simulator: bind: bad reply")
	}
	c := &channel{d: d, own: own, port: port,
		notifyReq: simproto.Msg(nil).U32(simproto.OpNotifyAsync, uint32(port))}
	// The blocking phase of Wait; without it (no descriptor left for the
	// eventfd) every wait uses the poller.
	if raw, err := own.ev.SyscallConn(); err == nil {
		if c.waiter, err = blockwait.New(); err == nil {
			c.raw = raw
			c.blockStep = c.waitInPpoll
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.lost != nil {
		c.own.Close()
		if d.closed {
			return nil, d.closedError()
		}
		return nil, d.lost
	}
	d.ports[port] = c // for Close and loss of the process's connection
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
	d    *Domain // the process's connection
	own  *Domain // the channel's own: bind, notify, unbind, its events
	port evtchn.Port
	// notifyReq is the notify_async request for the port, built once:
	// Notify writes it as is (never modified, so concurrent writes are
	// safe) and allocates nothing.
	notifyReq simproto.Msg

	interrupted atomic.Bool // see Interrupt
	buf         [64]byte    // for Wait, which one goroutine at a time calls

	// The blocking phase of Wait (internal/blockwait) runs blockStep on the
	// event socket's descriptor; the step's input and results are fields,
	// so that the method value is made once and no Wait allocates.
	waiter    *blockwait.Waiter // nil: every wait uses the poller
	raw       syscall.RawConn
	blockStep func(fd uintptr)
	window    time.Duration
	stepRes   blockwait.Result
	stepErr   error

	mu     sync.Mutex
	closed bool
}

// LocalPort is this domain's end of the channel.
func (c *channel) LocalPort() evtchn.Port { return c.port }

// Wait blocks until the port's event arrives on the channel's own event
// socket (it then writes the port back to unmask it, as to
// /dev/xen/evtchn), Interrupt is called, or the deadline passes: first in
// ppoll for up to blockwait.Window, then in the runtime poller.
func (c *channel) Wait(deadline time.Time) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	if c.interrupted.Swap(false) {
		c.clearWake()
		return c.lostErr()
	}
	if done, err := c.waitBlocking(deadline); done {
		return err
	}
	ev := c.own.ev
	if err := ev.SetReadDeadline(deadline); err != nil {
		return c.failed(err)
	}
	if c.interrupted.Swap(false) {
		c.clearWake()
		return c.lostErr()
	}
	n, err := ev.Read(c.buf[:])
	if n >= 4 {
		if _, err := ev.Write(c.buf[:n&^3]); err != nil {
			return c.failed(err)
		}
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.interrupted.Swap(false) {
			// Interrupt, or the loss of the daemon, which sets the
			// error before it interrupts every channel: report it,
			// so a waiter never takes the loss for an event.
			c.clearWake()
			return c.lostErr()
		}
		return os.ErrDeadlineExceeded
	}
	if n > 0 && err == nil {
		return nil // a partial port: the daemon never sends one
	}
	return c.failed(err) // n == 0: EOF, the daemon is gone
}

// blockingWindow is blockwait.Window; a variable for the tests.
var blockingWindow = blockwait.Window

// waitBlocking is Wait's first phase: ppoll on the event socket until an
// event, an Interrupt, the deadline or the end of the window. It reports
// done false when the wait must go on in the runtime poller.
func (c *channel) waitBlocking(deadline time.Time) (done bool, err error) {
	if c.waiter == nil || !blockwait.Acquire() {
		return false, nil
	}
	defer blockwait.Release()
	var ok bool
	if c.window, ok = blockwait.Budget(blockingWindow, deadline); !ok {
		return false, nil
	}
	// Control holds the socket open while the step runs, even if the
	// daemon's loss closes it meanwhile (that loss also wakes the waiter).
	if err := c.raw.Control(c.blockStep); err != nil {
		return false, nil // closed: the poller's path reports why
	}
	switch c.stepRes {
	case blockwait.Timeout:
		return false, nil
	case blockwait.Woken:
		c.interrupted.Store(false)
		return true, c.lostErr()
	}
	if c.stepErr != nil {
		return true, c.failed(c.stepErr)
	}
	return true, nil
}

// waitInPpoll is the blocking step: it waits, then reads the event and
// writes the port back to unmask it.
func (c *channel) waitInPpoll(fd uintptr) {
	c.stepRes, c.stepErr = c.waiter.Wait(int(fd), c.window)
	if c.stepErr != nil {
		c.stepRes = blockwait.Timeout
		return
	}
	if c.stepRes != blockwait.Readable {
		return
	}
	n, err := unix.Read(int(fd), c.buf[:])
	switch {
	case n >= 4:
		_, c.stepErr = unix.Write(int(fd), c.buf[:n&^3])
	case err == unix.EAGAIN || err == unix.EINTR:
		// Nothing after all: a spurious wake-up, harmless.
	case n > 0:
		// A partial port: the daemon never sends one.
	case err == nil:
		c.stepErr = io.EOF // the daemon is gone
	default:
		c.stepErr = err
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
	c.own.ev.SetReadDeadline(aLongTimeAgo)
}

// aLongTimeAgo is a deadline in the past, which wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// failed reports a broken event socket: closed by Close, or the daemon is
// gone.
func (c *channel) failed(cause error) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	o := c.own
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ioErrorLocked("event", cause)
}

// Notify sends an event to the remote end, through the daemon: one
// notify_async message, without waiting for a reply (there is none).
// It does not take callMu: a message on the SEQPACKET control socket is
// atomic, and since notify_async has no reply, one slipped between another
// request and its reply does not disturb that exchange. The daemon handles
// a connection's requests in order, so the event is raised before a later
// unbind of the port.
func (c *channel) Notify() error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("vchan simulator: notify on port %d of domain %d: %w", c.port, c.d.domid, evtchn.ErrClosed)
	}
	if err := c.d.usable(); err != nil {
		return err
	}
	if _, err := c.own.ctl.Write(c.notifyReq); err != nil {
		c.own.mu.Lock()
		defer c.own.mu.Unlock()
		return c.own.ioErrorLocked("notify", err)
	}
	return nil
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
	_, _, err := c.own.call("unbind", simproto.Msg(nil).U32(simproto.OpUnbind, uint32(c.port)))
	c.own.Close()
	if c.waiter != nil {
		c.waiter.Close()
	}
	return err
}

// lostErr reports that the daemon is gone: the wake-up every channel gets
// then is not an event, and Wait fails with this error.
func (c *channel) lostErr() error {
	for _, d := range [2]*Domain{c.d, c.own} {
		d.mu.Lock()
		lost := d.lost
		d.mu.Unlock()
		if lost != nil {
			return lost
		}
	}
	return nil
}
