package vchan

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/ring"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// Listener is a vchan server. It implements net.Listener. It always has one
// ring published in xenstore for its client domain; Accept waits for the
// client to connect to it, then publishes a fresh ring at the same path for
// the next client, so clients are served one after another, the way
// vchan-socket-proxy serves them.
type Listener struct {
	host   *Host
	xs     xenstore.Client
	sharer gnt.Sharer
	evt    evtchn.Device
	client uint16
	layout ring.Layout
	addr   *Addr

	mu      sync.Mutex // serialises Accept and the teardown in Close
	pending *serverRing
	// unpublished is why no ring is offered (pending is nil), and since
	// when: an Accept that times out meanwhile says so.
	unpublished      error
	unpublishedSince time.Time
	dl               deadline
	closed           chan struct{}
	closeOnce        sync.Once
	closeErr         error

	// waiting is the event channel a blocked Accept waits on, for Close
	// and SetDeadline to interrupt; nil when none waits.
	waitMu  sync.Mutex
	waiting evtchn.Channel

	owner string // the record in the directory's owner key (see owner.go)
	seq   uint64
}

// serverRing is a ring shared with the client domain and published in
// xenstore, waiting for a client.
type serverRing struct {
	ep      *ring.Endpoint
	ch      evtchn.Channel
	regions []gnt.Region
}

// Listen starts a vchan server for domain client. portOrPath is a port
// (letters, digits, '_' and '-'), which names the conventional directory
// /local/domain/<own ID>/data/vchan/<client>/<port>, or an absolute
// xenstore path. The rings are published there at once: a client can
// connect before the first Accept.
func Listen(client uint16, portOrPath string, cfg *Config) (*Listener, error) {
	ln, err := listen(client, portOrPath, cfg)
	if err != nil {
		var addr *Addr
		if ln != nil {
			addr = ln.addr
		}
		return nil, opError("listen", nil, addr, err)
	}
	return ln, nil
}

func listen(client uint16, portOrPath string, cfg *Config) (*Listener, error) {
	layout, err := cfg.layout()
	if err != nil {
		return nil, err
	}
	h, own, path, err := resolveEnds(cfg, true, client, portOrPath)
	if err != nil {
		return nil, err
	}
	ln := &Listener{host: h, client: client, layout: layout, addr: &Addr{Domain: own, Path: path}, dl: makeDeadline(), closed: make(chan struct{})}
	ln.dl.changed = ln.interrupt
	if ln.xs, err = h.xenstore(); err != nil {
		return ln, err
	}
	if ln.sharer, err = h.gntSharer(); err != nil {
		return ln, err
	}
	if ln.evt, err = h.evtchn(); err != nil {
		return ln, err
	}
	ln.owner, ln.seq = ownerRecord()
	if ln.pending, err = ln.publishRetrying(); err != nil {
		forgetOwner(ln.seq)
		if isShortage(err) {
			err = &temporaryError{err} // retrying Listen later may work
		}
		return ln, err
	}
	return ln, nil
}

// publish shares a fresh ring with the client domain and writes its
// ring-ref and event-channel into xenstore, readable by the client only, in
// one transaction, in libxenvchan_server_init's order (docs/PROTOCOL.md §9).
//
// The first publish also claims the directory, in the same transaction: it
// fails with EADDRINUSE if a live Listener owns it, and otherwise records
// this one as the owner and makes the directory node itself readable by the
// client. A client that can read the directory knows a server is there,
// even between two Accepts, when no ring is published; one that cannot is
// refused (ECONNREFUSED) instead of waiting.
func (ln *Listener) publish(first bool) (_ *serverRing, err error) {
	sr := &serverRing{}
	defer func() {
		if err != nil {
			sr.teardown()
		}
	}()
	if sr.ch, err = ln.evt.BindUnbound(ln.client); err != nil {
		return nil, fmt.Errorf("allocating an event channel for domain %d: %w", ln.client, err)
	}
	page, err := ln.sharer.Share(ln.client, 1, &gnt.UnmapNotify{
		ClearByte: true, Offset: ring.OffSrvLive,
		SendEvent: true, Port: uint32(sr.ch.LocalPort()),
	})
	if err != nil {
		return nil, fmt.Errorf("sharing the vchan page with domain %d: %w", ln.client, err)
	}
	var refs []uint32
	var areas [2][]byte
	for i, order := range [2]uint16{ln.layout.Left, ln.layout.Right} {
		n := ring.Pages(order)
		if n == 0 {
			continue
		}
		r, err := ln.sharer.Share(ln.client, n, nil)
		if err != nil {
			page.Close()
			return nil, fmt.Errorf("sharing a %d-byte ring with domain %d: %w", 1<<order, ln.client, err)
		}
		sr.regions = append(sr.regions, r)
		areas[i] = r.Bytes()
		for _, ref := range r.Refs() {
			refs = append(refs, uint32(ref))
		}
	}
	sr.regions = append(sr.regions, page) // the page is unmapped last
	if sr.ep, err = ring.NewServer(page.Bytes(), ln.layout, areas[0], areas[1], refs); err != nil {
		return nil, err
	}
	perms := ln.clientReadable()
	ringRef := strconv.FormatUint(uint64(page.Refs()[0]), 10)
	port := strconv.FormatUint(uint64(sr.ch.LocalPort()), 10)
	err = xenstore.Update(ln.xs, func(tx xenstore.Ops) error {
		if first {
			if err := ln.claim(tx); err != nil {
				return err
			}
		}
		for _, kv := range [2][2]string{{"ring-ref", ringRef}, {"event-channel", port}} {
			key := ln.addr.Path + "/" + kv[0]
			if err := tx.Write(key, []byte(kv[1])); err != nil {
				return err
			}
			if err := tx.SetPerms(key, perms); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("publishing the vchan in xenstore: %w", explainXenstore(err))
	}
	return sr, nil
}

// listenQuotaRetry bounds how long Listen retries its first publish while
// xenstored refuses a transaction for its quota: many Listens at once in one
// domain (C xenstored allows 10 open transactions) each hold one for
// milliseconds, so the refusal clears quickly; one that lasts is reported.
var listenQuotaRetry = 2 * time.Second

// publishRetrying is the first publish, retried with randomized, growing
// backoff (so that Listens refused together do not retry together) while
// the transaction quota refuses it.
func (ln *Listener) publishRetrying() (*serverRing, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		sr, err := ln.publish(true)
		if err == nil || !isTransactionQuota(err) || time.Since(start) > listenQuotaRetry {
			return sr, err
		}
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 7))))
	}
}

// claim takes the directory for this Listener inside the publishing
// transaction (see publish).
func (ln *Listener) claim(tx xenstore.Ops) error {
	dir := ln.addr.Path
	rec, err := tx.Read(dir + "/" + ownerKey)
	if err == nil && ownerAlive(rec) {
		return fmt.Errorf("a vchan server is already listening at %s for domain %d: %w", dir, ln.client, syscall.EADDRINUSE)
	}
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	// A directory left by a server that died, or none: start afresh.
	if err := tx.Rm(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	if err := tx.Write(dir, nil); err != nil {
		return err
	}
	if err := tx.SetPerms(dir, ln.clientReadable()); err != nil {
		return err
	}
	key := dir + "/" + ownerKey
	if err := tx.Write(key, []byte(ln.owner)); err != nil {
		return err
	}
	return tx.SetPerms(key, []xenstore.Perm{{Domain: ln.addr.Domain, Access: xenstore.AccessNone}})
}

// clientReadable is the permission of what the Listener publishes: owned
// by its own domain, readable by the client domain only.
func (ln *Listener) clientReadable() []xenstore.Perm {
	return []xenstore.Perm{{Domain: ln.addr.Domain, Access: xenstore.AccessNone}, {Domain: ln.client, Access: xenstore.AccessRead}}
}

// withdraw removes the keys of a ring that is no longer free (accepted,
// and no fresh one could be published), so that clients wait for the next
// one instead of trying the taken ring. The directory stays: the server is
// still there.
func (ln *Listener) withdraw() {
	for _, k := range [2]string{"ring-ref", "event-channel"} {
		_ = ln.xs.Rm(ln.addr.Path + "/" + k)
	}
}

// teardown closes a server ring that never got (or no longer has) a Conn.
func (sr *serverRing) teardown() error {
	if sr.ep != nil {
		return closeRing(sr.ep, sr.ch, sr.regions)
	}
	var errs []error
	for _, r := range sr.regions {
		errs = append(errs, r.Close())
	}
	if sr.ch != nil {
		errs = append(errs, sr.ch.Close())
	}
	return errors.Join(errs...)
}

// Accept waits for the client domain to connect and returns the connection.
func (ln *Listener) Accept() (net.Conn, error) { return ln.AcceptVchan() }

// AcceptVchan is Accept returning a *Conn.
func (ln *Listener) AcceptVchan() (*Conn, error) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	var delay time.Duration // the backoff while short of grants or quota
	for {
		if isClosed(ln.closed) {
			return nil, opError("accept", nil, ln.addr, net.ErrClosed)
		}
		if isClosed(ln.dl.wait()) {
			return nil, opError("accept", nil, ln.addr, ln.timeoutError())
		}
		if ln.pending == nil {
			// The last re-publish failed (e.g. the grant limit): try again,
			// and wait while the shortage lasts.
			sr, err := ln.publish(false)
			if err != nil {
				ln.noteUnpublished(err)
				if !isShortage(err) {
					return nil, opError("accept", nil, ln.addr, err)
				}
				if err := ln.backOff(&delay); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						err = ln.timeoutError()
					}
					return nil, opError("accept", nil, ln.addr, err)
				}
				continue
			}
			ln.pending, ln.unpublished = sr, nil
			delay = 0
		}
		sr := ln.pending
		switch live := sr.ep.PeerLive(); live {
		case ring.LiveWaiting:
			err := ln.waitConnect(sr.ch)
			if errors.Is(err, evtchn.ErrPeerGone) {
				// A client bound this ring's port, and its domain was
				// destroyed before it connected: publish a fresh ring.
				sr.teardown()
				ln.pending = nil
				continue
			}
			if err != nil {
				return nil, opError("accept", nil, ln.addr, err)
			}
			continue
		case ring.LiveOpen, ring.LiveClosed:
			// The client moved cli_live 2 → 1: connected. 0 means it
			// connected and has already closed (only the client domain's
			// mapping can clear the byte): it may have left data, which
			// the Conn delivers before io.EOF, as TCP's accept would.
		default:
			// Garbage from a hostile client: drop this ring and publish a
			// fresh one.
			sr.teardown()
			ln.pending = nil
			continue
		}
		c := newConn(ln.host, sr.ep, sr.ch, sr.regions, ln.addr, &Addr{Domain: ln.client, Path: ln.addr.Path})
		// Publish the next ring now, so the next client finds it. If that
		// fails (short of grants while this connection holds its own),
		// this connection is still good: the taken ring's keys are
		// withdrawn, clients wait, and the next Accept retries.
		var err error
		if ln.pending, err = ln.publish(false); err != nil {
			ln.withdraw()
			ln.noteUnpublished(err)
		}
		return c, nil
	}
}

// noteUnpublished records why the Listener offers no ring, keeping the
// time of the first failure in a row.
func (ln *Listener) noteUnpublished(err error) {
	if ln.unpublished == nil {
		ln.unpublishedSince = time.Now()
	}
	ln.unpublished = err
}

// timeoutError is the error of an Accept whose deadline passed: the plain
// timeout, or, while no ring is offered, a timeout that also says why, so
// that a server whose clients cannot connect learns the cause.
func (ln *Listener) timeoutError() error {
	if ln.pending != nil || ln.unpublished == nil {
		return os.ErrDeadlineExceeded
	}
	return &unpublishedError{cause: ln.unpublished, since: time.Since(ln.unpublishedSince)}
}

// unpublishedError is an Accept timeout while the Listener could offer
// clients no ring. It is os.ErrDeadlineExceeded and the cause (errors.Is
// finds both), a timeout, and temporary: a shortage passes.
type unpublishedError struct {
	cause error
	since time.Duration
}

func (e *unpublishedError) Error() string {
	return fmt.Sprintf("%v: no ring offered to clients for %v: %v", os.ErrDeadlineExceeded, e.since.Round(time.Millisecond), e.cause)
}
func (e *unpublishedError) Unwrap() []error { return []error{os.ErrDeadlineExceeded, e.cause} }
func (e *unpublishedError) Timeout() bool   { return true }
func (e *unpublishedError) Temporary() bool { return true }

// waitConnect waits for an event on the waiting ring's channel (the client
// connecting), an interruption by Close or SetDeadline, or the deadline.
// It returns nil when the caller should look again, and an error when the
// deadline has passed or the channel failed.
func (ln *Listener) waitConnect(ch evtchn.Channel) error {
	ln.waitMu.Lock()
	ln.waiting = ch
	ln.waitMu.Unlock()
	defer func() {
		ln.waitMu.Lock()
		ln.waiting = nil
		ln.waitMu.Unlock()
	}()
	// Registered first, then checked: a Close or SetDeadline from now on
	// interrupts the Wait below, and one before is seen here.
	if isClosed(ln.closed) {
		return nil
	}
	err := ch.Wait(ln.dl.when())
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if at := ln.dl.when(); at.IsZero() || time.Now().Before(at) {
			return nil // the deadline moved while it waited
		}
	}
	return err
}

// backOff waits while the Listener cannot publish a ring for a shortage
// that clears when connections close: until one of this host's
// connections closes, or *delay (doubling, up to a quarter second, since
// other processes of the domain may free grants too), the deadline or
// Close. Only a deadline or Close end it with an error.
func (ln *Listener) backOff(delay *time.Duration) error {
	*delay = min(max(2*(*delay), time.Millisecond), 250*time.Millisecond)
	t := time.NewTimer(*delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ln.host.freedSignal():
	case <-ln.dl.wait():
		return os.ErrDeadlineExceeded
	case <-ln.closed:
		return net.ErrClosed
	}
	return nil
}

// interrupt wakes a blocked Accept, which then looks at the listener's
// state again.
func (ln *Listener) interrupt() {
	ln.waitMu.Lock()
	defer ln.waitMu.Unlock()
	if ln.waiting != nil {
		ln.waiting.Interrupt()
	}
}

// Close stops listening: it unblocks Accept, withdraws the waiting ring and
// removes the xenstore directory. Accepted connections stay open.
func (ln *Listener) Close() error {
	first := false
	ln.closeOnce.Do(func() {
		first = true
		close(ln.closed)
		ln.interrupt()
		ln.mu.Lock()
		defer ln.mu.Unlock()
		ln.dl.stop()
		var errs []error
		if ln.pending != nil {
			errs = append(errs, ln.pending.teardown())
			ln.pending = nil
		}
		if err := ln.xs.Rm(ln.addr.Path); err != nil {
			errs = append(errs, fmt.Errorf("removing %s from xenstore: %w", ln.addr.Path, err))
		}
		ln.closeErr = errors.Join(errs...)
		forgetOwner(ln.seq)
	})
	if !first {
		return opError("close", nil, ln.addr, net.ErrClosed)
	}
	if ln.closeErr != nil {
		return opError("close", nil, ln.addr, ln.closeErr)
	}
	return nil
}

// Addr returns the listener's address: its own domain and the xenstore path.
func (ln *Listener) Addr() net.Addr { return ln.addr }

// SetDeadline sets the deadline for Accept, including a blocked one. The
// zero time means no deadline.
func (ln *Listener) SetDeadline(t time.Time) error {
	if isClosed(ln.closed) {
		return opError("set", nil, ln.addr, net.ErrClosed)
	}
	ln.dl.set(t)
	return nil
}
