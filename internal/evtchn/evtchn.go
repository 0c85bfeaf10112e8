// Package evtchn defines the Xen event channels the vchan engine needs: one
// interdomain channel per connection, used to wake the peer on new data, new
// space, connect and close (docs/PROTOCOL.md §4, §12).
//
// The engine depends on the Device and Channel interfaces only; the real
// /dev/xen/evtchn device and the simulated host both implement them.
package evtchn

import (
	"errors"
	"time"
)

// Port is an event channel port number, local to one domain.
type Port uint32

// Channel is one bound local port.
//
// Xen keeps one pending bit per port and masks the port while an event is
// pending: at most one wake-up is queued, further events coalesce into it,
// and receiving it clears the bit and unmasks the port. Spurious wake-ups
// are allowed, so a receiver must re-check the state it waits for.
//
// The receiving goroutine blocks in Wait itself: on a real device it sleeps
// on the channel's own descriptor in the Go runtime's poller, so no router
// goroutine hands the event over (that hand-off wakes a second thread, which
// on a virtual machine costs more than the event itself). At most one
// goroutine may be in Wait at a time; Interrupt, Notify and LocalPort may be
// called from any goroutine at any time.
type Channel interface {
	// LocalPort is this domain's end of the channel.
	LocalPort() Port
	// Notify sends an event to the remote end. Xen drops it silently when
	// the remote end is not bound (yet, or any more).
	Notify() error
	// Wait blocks until an event arrives or Interrupt is called (nil), the
	// deadline passes (os.ErrDeadlineExceeded; the zero time means none),
	// or the channel fails: the port can no longer fire (a failed unmask),
	// it was closed, or the transport that carries its events is gone (the
	// cross-process simulator's daemon). A failure is reported, never
	// taken for an event. Spurious returns of nil are allowed. Where the
	// device can ask Xen, a long Wait also checks that the remote end is
	// still bound, and fails with ErrPeerGone once a connected port is
	// not.
	Wait(deadline time.Time) error
	// Interrupt makes the current Wait return at once, or, if none is
	// blocked, the next one.
	Interrupt()
	// Close unbinds the port. No Wait may be in progress: interrupt it
	// and let it return first.
	Close() error
}

// Device hands out channels, like an open /dev/xen/evtchn.
type Device interface {
	// BindUnbound allocates a fresh port that only domain remote may bind
	// to; it becomes connected when remote calls BindInterdomain on it.
	BindUnbound(remote uint16) (Channel, error)
	// BindInterdomain connects a new local port to remotePort, which
	// domain remote allocated for this domain with BindUnbound.
	BindInterdomain(remote uint16, remotePort Port) (Channel, error)
	// Close releases the device; channels already bound stay usable until
	// they are closed.
	Close() error
}

// ErrNotBindable reports a BindInterdomain to a port that does not exist, is
// not unbound, or was not offered to this domain.
var ErrNotBindable = errors.New("event channel port not bindable")

// ErrPeerGone reports that the remote end of a connected channel is no
// longer bound: the peer's domain is gone (or the peer unbound the port
// without the close the vchan protocol prescribes).
var ErrPeerGone = errors.New("event channel: the remote end is no longer bound")

// ErrClosed reports use of a closed channel or device.
var ErrClosed = errors.New("event channel closed")
