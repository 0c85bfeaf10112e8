//go:build linux

package simclient

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

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

	mu     sync.Mutex
	closed bool
}

// LocalPort is this domain's end of the channel.
func (c *channel) LocalPort() evtchn.Port { return c.port }

// Wait blocks until the port's event arrives on the channel's own event
// socket (it then writes the port back to unmask it, as to
// /dev/xen/evtchn), Interrupt is called, or the deadline passes.
func (c *channel) Wait(deadline time.Time) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	ev := c.own.ev
	if err := ev.SetReadDeadline(deadline); err != nil {
		return c.failed(err)
	}
	if c.interrupted.Swap(false) {
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
			return c.lostErr()
		}
		return os.ErrDeadlineExceeded
	}
	if n > 0 && err == nil {
		return nil // a partial port: the daemon never sends one
	}
	return c.failed(err) // n == 0: EOF, the daemon is gone
}

// Interrupt ends the current Wait, or makes the next one return at once.
func (c *channel) Interrupt() {
	c.interrupted.Store(true)
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
