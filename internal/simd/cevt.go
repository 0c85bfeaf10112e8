package simd

import (
	"fmt"
	"sync"

	"github.com/vchan-go/vchan/internal/evtchn"
)

// device is the client's evtchn.Device.
type device struct {
	d      *Domain
	mu     sync.Mutex
	closed bool
}

// BindUnbound allocates a port that only domain remote may bind to.
func (dv *device) BindUnbound(remote uint16) (evtchn.Channel, error) {
	return dv.bind(msg(nil).u32(opBindUnbound, uint32(remote)))
}

// BindInterdomain connects a new local port to remotePort of domain
// remote, which must be unbound and offered to this domain (else the error
// wraps evtchn.ErrNotBindable).
func (dv *device) BindInterdomain(remote uint16, remotePort evtchn.Port) (evtchn.Channel, error) {
	return dv.bind(msg(nil).u32(opBindInterdomain, uint32(remote), uint32(remotePort)))
}

func (dv *device) bind(req msg) (evtchn.Channel, error) {
	dv.mu.Lock()
	closed := dv.closed
	dv.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("vchan simulator: bind in domain %d: device closed: %w", dv.d.domid, evtchn.ErrClosed)
	}
	d := dv.d
	// d.mu is held across the request so that the router, which takes it
	// to look ports up, cannot drop an event for the port before its
	// channel exists.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, d.closedError()
	}
	if d.lost != nil {
		return nil, d.lost
	}
	p, fds, err := d.callLocked("bind", req)
	if err != nil {
		return nil, err
	}
	closeAll(fds)
	port := evtchn.Port(p.u32())
	if p.bad {
		return nil, fmt.Errorf("vchan simulator: bind: bad reply")
	}
	c := &channel{d: d, port: port, events: make(chan struct{}, 1),
		notifyReq: msg(nil).u32(opNotifyAsync, uint32(port))}
	d.ports[port] = c
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
	d      *Domain
	port   evtchn.Port
	events chan struct{} // the pending bit: capacity 1
	// notifyReq is the notify_async request for the port, built once:
	// Notify writes it as is (never modified, so concurrent writes are
	// safe) and allocates nothing.
	notifyReq msg

	mu     sync.Mutex
	closed bool
}

func (c *channel) wake() {
	select {
	case c.events <- struct{}{}:
	default:
	}
}

// LocalPort is this domain's end of the channel.
func (c *channel) LocalPort() evtchn.Port { return c.port }

// Events delivers one value per batch of events received. After the
// daemon is lost every channel gets a spurious wake-up.
func (c *channel) Events() <-chan struct{} { return c.events }

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
	if _, err := c.d.ctl.Write(c.notifyReq); err != nil {
		c.d.mu.Lock()
		defer c.d.mu.Unlock()
		return c.d.ioErrorLocked("notify", err)
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
	_, _, err := d.call("unbind", msg(nil).u32(opUnbind, uint32(c.port)))
	return err
}

// Err reports that the daemon is gone (evtchn.Failer): the wake-up every
// channel gets then is not an event, and waiters must fail.
func (c *channel) Err() error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	return c.d.lost
}
