package vchan

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/ring"
)

// Conn is one vchan connection. It implements net.Conn and is safe for
// concurrent use: reads are serialised with reads, writes with writes.
//
// The vchan wire protocol has no half-close (docs/PROTOCOL.md §7): a side is
// either open or closed as a whole. So Conn has no CloseWrite. Close ends
// both directions, but what was written before Close is not lost: the peer
// reads it and then gets io.EOF. To know that the peer has read everything,
// call Flush before Close. Programs that need "no more data from me, but keep
// talking to me" must say so in their own protocol.
type Conn struct {
	ep      *ring.Endpoint
	ch      evtchn.Channel
	regions []gnt.Region // the data rings, then the shared page
	local   *Addr
	remote  *Addr
	rsize   int // capacity of the ring this side reads
	wsize   int // and of the ring it writes

	rmu, wmu  sync.Mutex // serialise readers, writers; Close takes both
	rdl, wdl  deadline
	readWake  chan struct{} // wake-ups handed over from a writer that took the event
	writeWake chan struct{} // and from a reader
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	broken    atomic.Pointer[error] // the first protocol error, sticky
	peerGone  atomic.Bool           // the peer's domain no longer exists
	host      *Host                 // for the peer watch; nil if none
	spinWait  atomic.Int64          // see SetSpinWait; nanoseconds, <= 0: off

	// polling is held by the one goroutine blocked in ch.Wait (see wait).
	polling sync.Mutex
	// mapped is held shared by Buffered and Available, which look at the
	// shared page without taking rmu or wmu, and exclusively by Close
	// while it unmaps the page.
	mapped sync.RWMutex
}

func newConn(h *Host, ep *ring.Endpoint, ch evtchn.Channel, regions []gnt.Region, local, remote *Addr) *Conn {
	c := &Conn{host: h,
		ep: ep, ch: ch, regions: regions, local: local, remote: remote,
		rsize: ep.ReadSize(), wsize: ep.WriteSize(),
		rdl: makeDeadline(), wdl: makeDeadline(),
		readWake:  make(chan struct{}, 1),
		writeWake: make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	c.rdl.changed = ch.Interrupt
	c.wdl.changed = ch.Interrupt
	c.spinWait.Store(int64(h.spinWait()))
	if h != nil {
		h.watchPeer(c)
	}
	return c
}

// errPeerDomainGone is what operations fail with once the peer's domain has
// been destroyed: like a connection reset, it is not an orderly close.
var errPeerDomainGone = syscall.ECONNRESET

// peerDomainGone marks the peer's domain destroyed and wakes both waiters.
func (c *Conn) peerDomainGone() {
	c.peerGone.Store(true)
	for _, ch := range [2]chan struct{}{c.readWake, c.writeWake} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	c.ch.Interrupt()
}

// Read reads up to len(p) bytes. It blocks until data arrives, the read
// deadline passes, or the connection closes. After the peer closed, it
// returns what is still buffered, then io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	woken := false // by a wait that may have been for the other direction
	for {
		if err := c.readyErr(&c.rdl); err != nil {
			return 0, c.opErr("read", err)
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := c.drain(p)
		if err != nil {
			return 0, c.opErr("read", c.fail(err))
		}
		if n > 0 {
			return n, nil
		}
		switch live := c.ep.PeerLive(); live {
		case ring.LiveOpen:
		case ring.LiveClosed:
			// The peer wrote its data before it cleared its live byte:
			// one more look drains what arrived in between.
			if n, err := c.drain(p); n > 0 || err != nil {
				return n, c.opErr("read", c.fail(err))
			}
			return 0, io.EOF
		default:
			return 0, c.opErr("read", c.fail(fmt.Errorf("%w: peer live byte is %d after connect", ErrProtocol, live)))
		}
		if c.peerGone.Load() {
			// What it wrote before dying has been read (the ring is empty).
			return 0, c.opErr("read", fmt.Errorf("peer domain %d is gone: %w", c.remote.Domain, errPeerDomainGone))
		}
		// A wake-up that brought nothing (an event for the writer, handed
		// on) is no sign that data is near: wait again without spinning.
		if !woken && c.spin(c.ep.Readable, &c.rdl) {
			continue // data arrived while spinning: no event needed
		}
		c.ep.RequestNotify(ring.NotifyWrite)
		if n, err := c.ep.Readable(); n > 0 || err != nil {
			continue // data arrived (or corruption) between the check and the request
		}
		if err := c.wait(c.readWake, c.writeWake, &c.rdl); err != nil {
			return 0, c.opErr("read", err)
		}
		woken = true
	}
}

// drain copies what the ring holds into p in chunks, so that each chunk's
// space goes back to a spinning writer as soon as it is copied out. A
// sleeping writer that asked for an event gets it once, when the drain
// ends: woken after the first chunk, it would write one chunk and sleep
// again, and on real Xen a wake-up costs far more than the copy
// (docs/PERFORMANCE.md). An error after some bytes is left for the next
// call to report.
func (c *Conn) drain(p []byte) (n int, err error) {
	notifyDue := false
	for n < len(p) {
		m, notify, rerr := c.ep.Read(p[n:min(len(p), n+copyChunk)])
		notifyDue = notifyDue || notify
		if rerr != nil && n == 0 {
			err = rerr
			break
		}
		if m == 0 || rerr != nil {
			break
		}
		n += m
	}
	if notifyDue {
		c.ch.Notify()
	}
	return n, err
}

// Write writes all of p, blocking while the ring is full, until the write
// deadline passes or the connection closes. Writing to a peer that has
// closed fails at once with an error wrapping syscall.EPIPE.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	total := 0
	woken := false // see Read
	// A sleeping reader that asked for an event gets it once, before this
	// Write waits for space or returns, not after the first chunk (see
	// drain): it then wakes to a full ring or to the whole Write.
	notifyDue := false
	defer func() {
		if notifyDue {
			c.ch.Notify()
		}
	}()
	for {
		if err := c.readyErr(&c.wdl); err != nil {
			return total, c.opErr("write", err)
		}
		if len(p) == 0 {
			return total, nil
		}
		if err := c.peerOpen(); err != nil {
			return total, c.opErr("write", err)
		}
		n, notify, err := c.ep.Write(p[:min(len(p), copyChunk)])
		if err != nil {
			return total, c.opErr("write", c.fail(err))
		}
		notifyDue = notifyDue || notify
		if n > 0 {
			total += n
			p = p[n:]
			woken = false
			continue
		}
		if notifyDue {
			c.ch.Notify() // the ring is full: the reader must empty it
			notifyDue = false
		}
		if !woken && c.spin(c.ep.Writable, &c.wdl) {
			continue // space appeared while spinning: no event needed
		}
		c.ep.RequestNotify(ring.NotifyRead)
		if n, err := c.ep.Writable(); n > 0 || err != nil {
			continue
		}
		if err := c.wait(c.writeWake, c.readWake, &c.wdl); err != nil {
			return total, c.opErr("write", err)
		}
		woken = true
	}
}

// Flush blocks until the peer has read everything written so far, the
// write deadline passes, or the peer closes. Use it before Close when the
// sender must know the data arrived.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for {
		if err := c.readyErr(&c.wdl); err != nil {
			return c.opErr("flush", err)
		}
		// The live byte first: the peer publishes its consumer index before
		// it clears that byte, so once it reads closed the index below is
		// final, and a peer that read everything and closed was flushed.
		open := c.peerOpen()
		free, err := c.ep.Writable()
		if err != nil {
			return c.opErr("flush", c.fail(err))
		}
		if free == c.wsize {
			return nil
		}
		if open != nil {
			return c.opErr("flush", open)
		}
		c.ep.RequestNotify(ring.NotifyRead)
		if free2, err := c.ep.Writable(); free2 != free || err != nil {
			continue
		}
		if err := c.wait(c.writeWake, c.readWake, &c.wdl); err != nil {
			return c.opErr("flush", err)
		}
	}
}

// copyChunk bounds one copy into or out of the ring before the index is
// published. A 64 KiB Write into a 64 KiB ring then lets the reader start
// copying the first chunk while the writer copies the next, instead of the
// two copies running one after the other. A variable for the benchmarks.
var copyChunk = 16 << 10

// DefaultSpinWait is how long a Read or Write that finds the ring empty (or
// full) keeps polling the peer's index before it asks the peer for an event
// and sleeps on the event channel; see Conn.SetSpinWait. It is the default
// on Xen and on the cross-process simulator, where a wake-up costs tens of
// microseconds (an event channel, a scheduler hop), and where a peer on a
// virtual CPU is often descheduled for longer than 50 µs: with 200 µs a
// 64 KiB-ring stream between two processes went to sleep a quarter as
// often and moved 1.4-1.6 times as many bytes as with 50 µs
// (docs/PERFORMANCE.md). Connections on the in-process Simulator default
// to 0: there a wake-up is a goroutine hand-off, and spinning only
// competes for the CPU (measured: half the throughput).
const DefaultSpinWait = 200 * time.Microsecond

// SetSpinWait sets how long Read polls the peer's producer index when the
// ring is empty, and Write its consumer index when the ring is full, before
// requesting an event and blocking on the event channel. A streaming peer
// usually moves its index within microseconds, and then neither side asks
// for (nor sends) an event: no hypercall, no wake-up. d <= 0 turns spinning
// off: every wait then sleeps on the event channel at once (the choice for
// many mostly idle connections on few cores). The default is
// DefaultSpinWait, or 0 on the in-process Simulator. Spinning is bounded by
// about d per wait (a number of polls measured once per process; d counts
// as an hour at most), so an idle connection uses no CPU; it ends early at
// Close and at the deadline. It may be called at any time, also during Read
// and Write.
func (c *Conn) SetSpinWait(d time.Duration) { c.spinWait.Store(int64(d)) }

// readyErr reports a closed connection, a sticky protocol error or an
// expired deadline, in that order.
func (c *Conn) readyErr(d *deadline) error {
	if isClosed(c.closed) {
		return net.ErrClosed
	}
	if p := c.broken.Load(); p != nil {
		return *p
	}
	if isClosed(d.wait()) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// peerOpen reports whether writing makes sense: the peer is connected.
// The live byte comes first: a peer process that closed (or was killed, and
// the kernel's unmap notification cleared the byte) is an orderly end,
// EPIPE, even if its domain is torn down right after; a destroyed domain
// runs no kernel to clear the byte, and only @releaseDomain tells.
func (c *Conn) peerOpen() error {
	switch live := c.ep.PeerLive(); live {
	case ring.LiveOpen:
		if c.peerGone.Load() {
			return fmt.Errorf("peer domain %d is gone: %w", c.remote.Domain, errPeerDomainGone)
		}
		return nil
	case ring.LiveClosed:
		// The peer closed; or what carries both ends' events failed first
		// (the simulator's daemon was killed, and the peer closed because
		// of it). A notify tells them apart, on this error path only.
		if err := c.ch.Notify(); err != nil && !errors.Is(err, evtchn.ErrClosed) {
			return err
		}
		return errPeerClosed
	default:
		return c.fail(fmt.Errorf("%w: peer live byte is %d after connect", ErrProtocol, live))
	}
}

// fail records the first protocol error: the ring cannot be trusted again.
func (c *Conn) fail(err error) error {
	if err != nil && errors.Is(err, ErrProtocol) {
		c.broken.CompareAndSwap(nil, &err)
	}
	return err
}

// wait blocks until the event channel fires (or another waiter hands over a
// wake-up), the deadline passes, or the connection closes. One event channel
// serves both directions, so a waiter that takes an event passes a wake-up
// on to the other direction's waiter: spurious wake-ups are harmless, lost
// ones would hang.
//
// One waiter at a time blocks on the channel itself (evtchn.Channel.Wait:
// no router goroutine hands the event over, which saves a thread wake-up
// per event); the other direction's waiter, if any, waits for wake-ups from
// it. Whoever stops polling wakes the other waiter, which then polls in its
// turn if it still has to wait: every event is seen by a poller, and none
// waits unwatched.
func (c *Conn) wait(mine, other chan struct{}, d *deadline) error {
	if c.polling.TryLock() {
		err := c.poll(mine, d)
		c.polling.Unlock()
		select {
		case other <- struct{}{}:
		default:
		}
		return err
	}
	select {
	case <-mine:
		return nil
	case <-d.wait():
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

// poll blocks in the event channel's Wait until an event, an interruption
// (Close, a new deadline, the peer domain's death), the deadline or a
// channel failure.
func (c *Conn) poll(mine chan struct{}, d *deadline) error {
	select {
	case <-mine:
		return nil // handed over by the other waiter before this one polled
	default:
	}
	if isClosed(c.closed) {
		return net.ErrClosed
	}
	err := c.ch.Wait(d.when())
	if errors.Is(err, evtchn.ErrPeerGone) {
		// Xen says the peer's end of the channel is gone: its domain was
		// destroyed (nothing else unbinds it without first clearing the
		// live byte, which the caller checks first).
		c.peerDomainGone()
		return nil
	}
	return err
}

func (c *Conn) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return opError(op, c.local, c.remote, err)
}

// Close closes the connection: it marks this side closed in the shared page,
// unmaps the rings, wakes the peer and unbinds the event channel, in
// libxenvchan's order (docs/PROTOCOL.md §8). Blocked Read and Write calls return
// net.ErrClosed. Data already written is still delivered to the peer.
func (c *Conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.closed)
		c.ch.Interrupt()
		// Wait for in-flight reads and writes: they return promptly once
		// closed is closed, and must not touch the rings after unmapping.
		c.rmu.Lock()
		c.wmu.Lock()
		defer c.wmu.Unlock()
		defer c.rmu.Unlock()
		c.rdl.stop()
		c.wdl.stop()
		c.mapped.Lock()
		c.closeErr = closeRing(c.ep, c.ch, c.regions)
		c.ep = nil
		c.mapped.Unlock()
		if c.host != nil {
			c.host.unwatchPeer(c)
			c.host.released()
		}
	})
	if !first {
		return opError("close", c.local, c.remote, net.ErrClosed)
	}
	if c.closeErr != nil {
		return opError("close", c.local, c.remote, c.closeErr)
	}
	return nil
}

// Buffered returns how many bytes a Read can return now without blocking,
// like libxenvchan_data_ready: 0 when none, after Close, or once the ring
// is found corrupt (the next Read reports that).
func (c *Conn) Buffered() int {
	c.mapped.RLock()
	defer c.mapped.RUnlock()
	if c.ep == nil {
		return 0
	}
	n, _ := c.ep.Published()
	return n
}

// Available returns how many bytes a Write can put in the ring now without
// blocking, like libxenvchan_buffer_space: 0 when the ring is full, after
// Close, or once the ring is found corrupt.
func (c *Conn) Available() int {
	c.mapped.RLock()
	defer c.mapped.RUnlock()
	if c.ep == nil {
		return 0
	}
	_, n := c.ep.Published()
	return n
}

// closeRing tears down one side of a vchan: live byte 0, unmap the data
// rings and the page (firing the unmap notify), notify the peer, unbind.
func closeRing(ep *ring.Endpoint, ch evtchn.Channel, regions []gnt.Region) error {
	ep.Close()
	var errs []error
	for _, r := range regions {
		errs = append(errs, r.Close())
	}
	ch.Notify()
	errs = append(errs, ch.Close())
	return errors.Join(errs...)
}

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if isClosed(c.closed) {
		return opError("set", nil, c.local, net.ErrClosed)
	}
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read calls, including ones already
// blocked. The zero time means no deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if isClosed(c.closed) {
		return opError("set", nil, c.local, net.ErrClosed)
	}
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for Write calls, including ones already
// blocked. A Write that times out may have written part of its data.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if isClosed(c.closed) {
		return opError("set", nil, c.local, net.ErrClosed)
	}
	c.wdl.set(t)
	return nil
}

// RingSizes returns the capacity in bytes of the ring this side reads and
// of the ring it writes.
func (c *Conn) RingSizes() (read, write int) { return c.rsize, c.wsize }
