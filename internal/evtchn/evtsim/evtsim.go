// Package evtsim simulates the event channels of a Xen host inside one
// process, so that vchan endpoints of several "domains" can talk to each
// other in tests without Xen.
//
// A Switch is the host's event-channel table, shared by all simulated
// domains. Each domain gets handles to it with Open, the way a process opens
// /dev/xen/evtchn. The semantics follow Xen's (docs/PROTOCOL.md §12):
//
//   - Ports are numbered per domain, starting at 1 (Xen reserves port 0).
//     Numbers increase; a number is reused only after the counter wraps.
//   - BindUnbound allocates a port that only the named remote domain may
//     bind to (EVTCHNOP_alloc_unbound); BindInterdomain connects to such a
//     port (EVTCHNOP_bind_interdomain). A domain may connect to its own
//     unbound port, as Xen allows.
//   - Notify on a port that is not connected (yet, or any more) is dropped
//     silently, as Xen's evtchn_send does for ECS_UNBOUND ports.
//   - When one end closes, the other end's port goes back to "unbound",
//     offered to the domain that closed, as Xen's evtchn_close does.
//   - Each port has one pending bit: events that arrive while one is
//     pending coalesce into it, and Wait consumes it.
//
// The Switch runs no goroutines: a notification is a non-blocking send on the
// receiver's pending channel (capacity 1), made under the Switch's lock.
// Channel.Wait enforces the interface's rule that at most one goroutine
// waits at a time: a second concurrent Wait fails, so every in-process test
// checks that its caller keeps the rule the real device relies on.
package evtsim

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
)

// Switch is the event-channel table of a simulated Xen host: all ports of all
// simulated domains. The zero value is not usable; use NewSwitch. A Switch is
// safe for concurrent use.
type Switch struct {
	mu      sync.Mutex
	domains map[uint16]*domain
}

// domain is the port table of one simulated domain. When the domain dies
// (CloseDomain) the struct is dropped from the Switch and marked dead, so
// handles that still point at it fail instead of touching a later domain that
// reuses the domid.
type domain struct {
	id    uint16
	ports map[evtchn.Port]*port
	next  evtchn.Port // next port number to try
	dead  bool
}

// port is one bound event-channel port; it is also the evtchn.Channel handed
// out for it. All mutable fields are guarded by sw.mu.
type port struct {
	sw     *Switch
	dom    *domain
	num    evtchn.Port
	events chan struct{} // capacity 1: Xen's pending bit

	// interrupt holds one pending Interrupt (capacity 1).
	interrupt chan struct{}
	// waiting is set while a goroutine is in Wait.
	waiting atomic.Bool
	// timer bounds a Wait with a deadline; only the one waiter uses it,
	// so it is made once and reset, and Wait does not allocate.
	timer *time.Timer

	// peer is the connected remote end, or nil while the port is unbound.
	peer *port
	// remote is the domain allowed to bind to this port while it is
	// unbound; for a connected port, the peer's domain.
	remote uint16

	// peerDied is set when the peer's domain was destroyed while
	// connected: Wait then fails with evtchn.ErrPeerGone, as the real
	// device's check of the port's status does (the simulator tells at
	// once, where Xen is asked once a second).
	peerDied bool

	// closed is set by Channel.Close: the handle is unusable from then on.
	closed bool
	// holds counts PortRefs (Linux evtchn_get references taken by the
	// grant devices for unmap notifications). The port stays bound in the
	// host until the channel is closed and the last hold is released.
	holds int
	// removed is set once the port is no longer in its domain's table.
	removed bool
	// forward, if set, is called for every event raised on the port (see
	// Forward).
	forward func()
}

// NewSwitch returns an empty event-channel table.
func NewSwitch() *Switch {
	return &Switch{domains: make(map[uint16]*domain)}
}

// domainLocked returns domain domid's port table, creating it if needed.
// s.mu must be held.
func (s *Switch) domainLocked(domid uint16) *domain {
	d := s.domains[domid]
	if d == nil {
		d = &domain{id: domid, ports: make(map[evtchn.Port]*port), next: 1}
		s.domains[domid] = d
	}
	return d
}

// Open returns a handle through which domain domid binds ports, like opening
// /dev/xen/evtchn inside that domain. Handles are cheap; a domain may have
// any number of them.
func (s *Switch) Open(domid uint16) evtchn.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &device{sw: s, dom: s.domainLocked(domid)}
}

// Ports returns how many ports domain domid has bound in the host, including
// ports whose Channel was closed but that are still held (see Hold). Tests use
// it to check for leaks.
func (s *Switch) Ports(domid uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.domains[domid]; d != nil {
		return len(d.ports)
	}
	return 0
}

// CloseDomain simulates the death of domain domid: all its ports are unbound,
// whatever holds they have, and the ports connected to them in other domains
// go back to "unbound", as Xen does when it destroys a domain's event
// channels. Handles (Devices, Channels, PortRefs) of the dead domain fail with
// errors wrapping evtchn.ErrClosed from then on. A later Open with the same
// domid gets a fresh domain whose port numbers start again at 1.
//
// When the grant simulator is used too, close the domain's grant regions
// first (gntsim's CloseDomain), so that their unmap notifications still find
// the ports bound.
func (s *Switch) CloseDomain(domid uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[domid]
	if d == nil {
		return
	}
	delete(s.domains, domid)
	d.dead = true
	for _, p := range d.ports {
		p.closed = true
		if q := p.peer; q != nil {
			q.peerDied = true
			q.Interrupt()
		}
		s.unbindLocked(p)
		p.Interrupt() // a waiter of the dead domain fails
	}
}

// unbindLocked removes p from its domain's table. Its peer, if any, becomes
// unbound and offered back to p's domain, as in Xen's evtchn_close. s.mu must
// be held.
func (s *Switch) unbindLocked(p *port) {
	if p.removed {
		return
	}
	p.removed = true
	if q := p.peer; q != nil {
		q.peer = nil
		q.remote = p.dom.id
		p.peer = nil
	}
	delete(p.dom.ports, p.num)
}

// bindLocked allocates a new port in d, offered to domain remote. s.mu must
// be held.
func (s *Switch) bindLocked(d *domain, remote uint16) *port {
	// Increasing numbers, skipping 0 (reserved by Xen) and ports still in
	// use after a wrap-around.
	for {
		n := d.next
		d.next++
		if n == 0 {
			continue
		}
		if _, used := d.ports[n]; used {
			continue
		}
		p := &port{sw: s, dom: d, num: n, remote: remote,
			events: make(chan struct{}, 1), interrupt: make(chan struct{}, 1)}
		d.ports[n] = p
		return p
	}
}

// raiseLocked sends an event to p's remote end, if p is connected. The send
// never blocks: if an event is already pending at the receiver, the new one
// coalesces into it (Xen's pending bit). s.mu must be held.
func (p *port) raiseLocked() {
	if q := p.peer; q != nil {
		select {
		case q.events <- struct{}{}:
		default:
		}
		if q.forward != nil {
			q.forward()
		}
	}
}

// Forward makes every event raised on ch's port call f too, under the
// Switch's lock (so f must be quick and must not call into the Switch),
// until Forward(ch, nil); once that returns, f is never called again. The
// cross-process simulator uses it to ring a port's bell in the process that
// bound it. ch must be a Channel of a Switch.
func Forward(ch evtchn.Channel, f func()) error {
	p, ok := ch.(*port)
	if !ok {
		return fmt.Errorf("evtsim: Forward: %T is not a simulated channel", ch)
	}
	p.sw.mu.Lock()
	defer p.sw.mu.Unlock()
	p.forward = f
	return nil
}

// device is an evtchn.Device for one domain.
type device struct {
	sw     *Switch
	dom    *domain
	closed bool // guarded by sw.mu
}

func (dv *device) checkLocked(op string) error {
	if dv.closed {
		return fmt.Errorf("evtsim: %s in domain %d: device closed: %w", op, dv.dom.id, evtchn.ErrClosed)
	}
	if dv.dom.dead {
		return fmt.Errorf("evtsim: %s in domain %d: domain is dead: %w", op, dv.dom.id, evtchn.ErrClosed)
	}
	return nil
}

// BindUnbound allocates a fresh port of the device's domain that only domain
// remote may bind to.
func (dv *device) BindUnbound(remote uint16) (evtchn.Channel, error) {
	s := dv.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := dv.checkLocked("bind unbound port"); err != nil {
		return nil, err
	}
	return s.bindLocked(dv.dom, remote), nil
}

// BindInterdomain connects a new local port to port remotePort of domain
// remote. That port must exist, be unbound and be offered to this domain;
// otherwise the error wraps evtchn.ErrNotBindable and says which condition
// failed.
func (dv *device) BindInterdomain(remote uint16, remotePort evtchn.Port) (evtchn.Channel, error) {
	s := dv.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := dv.checkLocked("bind interdomain"); err != nil {
		return nil, err
	}
	self := dv.dom.id
	var rp *port
	if rd := s.domains[remote]; rd != nil {
		rp = rd.ports[remotePort]
	}
	switch {
	case rp == nil:
		return nil, fmt.Errorf("evtsim: domain %d binding to port %d of domain %d: no such port: %w",
			self, remotePort, remote, evtchn.ErrNotBindable)
	case rp.peer != nil:
		return nil, fmt.Errorf("evtsim: domain %d binding to port %d of domain %d: port already connected to port %d of domain %d: %w",
			self, remotePort, remote, rp.peer.num, rp.peer.dom.id, evtchn.ErrNotBindable)
	case rp.remote != self:
		return nil, fmt.Errorf("evtsim: domain %d binding to port %d of domain %d: port is offered to domain %d: %w",
			self, remotePort, remote, rp.remote, evtchn.ErrNotBindable)
	}
	lp := s.bindLocked(dv.dom, remote)
	lp.peer = rp
	rp.peerDied = false // connected again, to a new domain
	rp.peer = lp
	return lp, nil
}

// Close marks the handle closed: further binds through it fail with an error
// wrapping evtchn.ErrClosed. Unlike closing the real /dev/xen/evtchn (which
// unbinds every port bound through the fd), it unbinds nothing: the
// evtchn.Device contract keeps already bound channels usable until they are
// closed themselves. A second Close returns an error wrapping
// evtchn.ErrClosed.
func (dv *device) Close() error {
	dv.sw.mu.Lock()
	defer dv.sw.mu.Unlock()
	if dv.closed {
		return fmt.Errorf("evtsim: close device of domain %d: %w", dv.dom.id, evtchn.ErrClosed)
	}
	dv.closed = true
	return nil
}

// LocalPort returns the port number in the channel's own domain. It stays
// valid after Close.
func (p *port) LocalPort() evtchn.Port { return p.num }

// ErrConcurrentWait reports a second goroutine calling Wait on a channel
// that one is already waiting on, which the evtchn.Channel contract forbids.
var ErrConcurrentWait = errors.New("evtsim: concurrent Wait on one event channel")

// Wait consumes the pending event, or blocks until one arrives, Interrupt
// is called, or the deadline passes. After Close, or once the domain died,
// it fails with an error wrapping evtchn.ErrClosed.
func (p *port) Wait(deadline time.Time) error {
	if !p.waiting.CompareAndSwap(false, true) {
		return fmt.Errorf("port %d of domain %d: %w", p.num, p.dom.id, ErrConcurrentWait)
	}
	defer p.waiting.Store(false)
	if err := p.usable("wait"); err != nil {
		return err
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			select {
			case <-p.events:
				return nil
			case <-p.interrupt:
				return p.usable("wait")
			default:
				return os.ErrDeadlineExceeded
			}
		}
		if p.timer == nil {
			p.timer = time.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		defer p.timer.Stop()
		expired = p.timer.C
	}
	select {
	case <-p.events:
		return nil
	case <-p.interrupt:
		return p.usable("wait")
	case <-expired:
		return os.ErrDeadlineExceeded
	}
}

// usable returns the error of a closed channel or a dead domain, then
// evtchn.ErrPeerGone for a port whose peer's domain died, or nil.
func (p *port) usable(op string) error {
	s := p.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.closed || p.removed {
		return p.closedError(op)
	}
	if p.peerDied {
		return fmt.Errorf("port %d of domain %d: %w", p.num, p.dom.id, evtchn.ErrPeerGone)
	}
	return nil
}

// Interrupt ends the current Wait, or makes the next one return at once.
func (p *port) Interrupt() {
	select {
	case p.interrupt <- struct{}{}:
	default:
	}
}

// Notify raises an event on the remote end, or drops it silently if there is
// none. It does not allocate. After Close (or the death of the domain) it
// returns an error wrapping evtchn.ErrClosed.
func (p *port) Notify() error {
	s := p.sw
	s.mu.Lock()
	if p.closed || p.removed {
		s.mu.Unlock()
		return p.closedError("notify")
	}
	p.raiseLocked()
	s.mu.Unlock()
	return nil
}

func (p *port) closedError(op string) error {
	return fmt.Errorf("evtsim: %s on port %d of domain %d: %w", op, p.num, p.dom.id, evtchn.ErrClosed)
}

// Close unbinds the port; the remote end's port becomes unbound, so its
// notifications are dropped. If the port is held for an unmap notification
// (see Hold), it stays bound in the host until the last hold is released, as
// Linux's reference counting of user event channels does; the Channel itself
// is unusable at once. A second Close returns an error wrapping
// evtchn.ErrClosed.
func (p *port) Close() error {
	s := p.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.closed {
		return p.closedError("close")
	}
	p.closed = true
	if p.holds == 0 {
		s.unbindLocked(p)
	}
	p.Interrupt() // a Wait in progress, against the contract, fails
	return nil
}

// PortRef is a reference on a bound port, the simulated counterpart of
// Linux's evtchn_get/evtchn_put. gntalloc and gntdev take one when they accept
// an unmap notification with SEND_EVENT, and the port stays bound in Xen until
// the notification fired, even if the process closed its event channel first
// (which is what happens when it dies). Holding a PortRef rather than a port
// number also means the notification can never reach a different port that
// later reuses the number.
type PortRef struct {
	p        *port
	released bool // guarded by p.sw.mu
}

// Hold takes a reference on port num of domain domid, which must be bound in the
// host (else the error wraps evtchn.ErrClosed; Linux answers EINVAL). Release
// it when done.
func (s *Switch) Hold(domid uint16, num evtchn.Port) (*PortRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *port
	if d := s.domains[domid]; d != nil {
		p = d.ports[num]
	}
	if p == nil {
		return nil, fmt.Errorf("evtsim: hold port %d of domain %d: no such bound port: %w", num, domid, evtchn.ErrClosed)
	}
	p.holds++
	return &PortRef{p: p}, nil
}

// Notify raises an event on the remote end of the held port, as the
// kernel does on unmap (docs/PROTOCOL.md §5).
// It fails, with an error wrapping evtchn.ErrClosed, after Release or once the
// port was unbound by the death of its domain.
func (r *PortRef) Notify() error {
	s := r.p.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.released || r.p.removed {
		return r.p.closedError("notify through hold")
	}
	r.p.raiseLocked()
	return nil
}

// Release drops the reference. If the port's Channel was already closed and
// this was the last reference, the port is unbound now. Releasing twice is a
// no-op.
func (r *PortRef) Release() {
	s := r.p.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.released {
		return
	}
	r.released = true
	p := r.p
	p.holds--
	if p.holds == 0 && p.closed {
		s.unbindLocked(p)
	}
}
