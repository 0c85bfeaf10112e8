package vchan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/ring"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// DefaultDialTimeout bounds how long Dial waits for a server that is busy
// (between two Accepts) or, with Config.WaitForServer, not there yet.
const DefaultDialTimeout = 10 * time.Second

// Dial connects to the vchan server in domain server at portOrPath (a port,
// naming /local/domain/<server>/data/vchan/<own ID>/<port>, or an absolute
// xenstore path). If no server listens there, it fails at once with an
// error wrapping syscall.ECONNREFUSED (see Config.WaitForServer). A server
// that is between two Accepts is waited for, up to DefaultDialTimeout.
func Dial(server uint16, portOrPath string, cfg *Config) (*Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultDialTimeout)
	defer cancel()
	return DialContext(ctx, server, portOrPath, cfg)
}

// DialContext is Dial, waiting as long as ctx allows instead of
// DefaultDialTimeout.
func DialContext(ctx context.Context, server uint16, portOrPath string, cfg *Config) (*Conn, error) {
	c, remote, err := dial(ctx, server, portOrPath, cfg, cfg.waitForServer())
	if err != nil {
		return nil, opError("dial", nil, remote, err)
	}
	return c, nil
}

func dial(ctx context.Context, server uint16, portOrPath string, cfg *Config, wait bool) (*Conn, *Addr, error) {
	h, own, path, err := resolveEnds(cfg, false, server, portOrPath)
	if err != nil {
		return nil, nil, err
	}
	remote := &Addr{Domain: server, Path: path}
	d := dialer{host: h, server: server, local: &Addr{Domain: own, Path: path}, remote: remote}
	if d.xs, err = h.xenstore(); err != nil {
		return nil, remote, err
	}
	if d.mapper, err = h.gntMapper(); err != nil {
		return nil, remote, err
	}
	if d.evt, err = h.evtchn(); err != nil {
		return nil, remote, err
	}
	// Watch the directory before the first look, so a server that publishes
	// in between is not missed. The watch fires once at once.
	w, err := d.xs.Watch(path)
	if err != nil {
		err = explainXenstore(err)
		if isShortage(err) {
			err = &temporaryError{err} // the quota frees as other Dials end
		}
		return nil, remote, err
	}
	defer w.Close()
	lastErr := errors.New("the server has not published it")
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				return nil, remote, fmt.Errorf("xenstore watch on %s ended (connection to xenstore lost?); last attempt: %v", path, lastErr)
			}
		case <-ctx.Done():
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = os.ErrDeadlineExceeded
			}
			return nil, remote, &waitError{fmt.Sprintf("no vchan server at %s (%v)", path, lastErr), err}
		}
		c, err := d.connect()
		if err == nil {
			return c, remote, nil
		}
		if !errors.Is(err, errRetry) {
			return nil, remote, err
		}
		if !wait && errors.Is(err, errNotPublished) && !d.serverPresent() {
			return nil, remote, fmt.Errorf("no vchan server is listening at %s for domain %d (or it is not visible to this domain): %w",
				path, own, syscall.ECONNREFUSED)
		}
		lastErr = err
	}
}

// errNotPublished marks a read of ring-ref that found nothing: no key, or
// none this domain may read.
var errNotPublished = errors.New("no ring published")

// serverPresent reports whether a server claims the directory: a Listener
// makes the directory node readable by its client for as long as it
// listens, also while no ring is free (see Listener.publish).
func (d *dialer) serverPresent() bool {
	_, err := d.xs.Read(d.remote.Path)
	return err == nil
}

// errRetry marks a failure that a later xenstore event may cure: no ring
// published yet, a stale ring, a ring another client took.
var errRetry = errors.New("waiting")

type dialer struct {
	host          *Host
	server        uint16
	local, remote *Addr
	xs            xenstore.Client
	mapper        gnt.Mapper
	evt           evtchn.Device
}

// connect reads the server's ring-ref and event-channel and connects to them,
// in libxenvchan_client_init's order (docs/PROTOCOL.md §9): bind the event
// channel, map the page with an unmap notify on cli_live, validate the
// layout, map the rings (the one it reads read-only), claim the ring, notify.
func (d *dialer) connect() (_ *Conn, err error) {
	ref, port, err := d.readKeys()
	if err != nil {
		return nil, err
	}
	ch, err := d.evt.BindInterdomain(d.server, evtchn.Port(port))
	if err != nil {
		// Not bindable: a stale entry, or another client bound it first.
		return nil, fmt.Errorf("%w: binding event channel %d of domain %d: %v", errRetry, port, d.server, err)
	}
	var regions []gnt.Region
	defer func() {
		if err != nil {
			for i := len(regions) - 1; i >= 0; i-- {
				regions[i].Close()
			}
			ch.Close()
		}
	}()
	page, err := d.mapper.Map(d.server, []gnt.Ref{gnt.Ref(ref)}, true, &gnt.UnmapNotify{
		ClearByte: true, Offset: ring.OffCliLive,
		SendEvent: true, Port: uint32(ch.LocalPort()),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: mapping grant %d of domain %d: %v", errRetry, ref, d.server, err)
	}
	regions = append(regions, page)
	layout, refs, err := ring.ReadLayout(page.Bytes())
	if err != nil {
		return nil, err
	}
	var areas [2][]byte
	nLeft := ring.Pages(layout.Left)
	for i, part := range [2][]uint32{refs[:nLeft], refs[nLeft:]} {
		if len(part) == 0 {
			continue
		}
		grefs := make([]gnt.Ref, len(part))
		for j, r := range part {
			grefs[j] = gnt.Ref(r)
		}
		// The client writes the left ring and only reads the right one.
		r, err := d.mapper.Map(d.server, grefs, i == 0, nil)
		if err != nil {
			err = fmt.Errorf("mapping the %d-page ring of domain %d: %w", len(part), d.server, err)
			if errors.Is(err, gnt.ErrBadRef) {
				// A stale ring the server withdrew after we mapped its
				// page (it accepted a client that had already closed,
				// and closed it): its fresh ring is on the way.
				err = fmt.Errorf("%w: %w", errRetry, err)
			}
			return nil, err
		}
		regions = append([]gnt.Region{r}, regions...) // the page stays last
		areas[i] = r.Bytes()
	}
	ep, err := ring.NewClient(page.Bytes(), layout, areas[0], areas[1])
	if err != nil {
		return nil, err
	}
	if err := ep.Claim(); err != nil {
		if errors.Is(err, ring.ErrRingTaken) {
			return nil, fmt.Errorf("%w: %v", errRetry, err)
		}
		return nil, err
	}
	ch.Notify() // the connect wake-up (docs/PROTOCOL.md §3)
	return newConn(d.host, ep, ch, regions, d.local, d.remote), nil
}

// readKeys reads ring-ref and event-channel and validates them: decimal,
// non-zero (libxenvchan treats 0 as failure), within range. It reads them
// separately, as libxenvchan does, not in a transaction: a Dial then holds
// no transaction, so any number of Dials of one domain stay clear of
// xenstored's transaction quota (Qubes issue 11059).
//
// The pair must not be torn, though. A Listener re-publishes both keys in
// one transaction as soon as it accepts a client, so two plain reads can
// straddle that: ring-ref of the ring just accepted, event-channel of the
// fresh one. That port is unbound, so binding it succeeds, and so does
// mapping the accepted ring's page, which the server still grants. The
// claim then fails, but the failed attempt has mapped a live connection's
// page with the unmap notify that clears cli_live: unmapping it closed that
// connection under both its ends. So readKeys reads ring-ref a second time
// after event-channel, and a changed value means a re-publish came in
// between: it retries at the next watch event (the re-publish fired one).
// (The same ref read twice around a port of another publication would need
// two re-publishes within the three reads, the second reusing the first
// ring's grant reference: a Listener allocates each fresh ring while the
// one it accepted still holds its grants.)
func (d *dialer) readKeys() (ref, port uint32, err error) {
	refV, err := d.xs.Read(d.remote.Path + "/ring-ref")
	var portV, refAgain []byte
	if err == nil {
		portV, err = d.xs.Read(d.remote.Path + "/event-channel")
	}
	if err == nil {
		refAgain, err = d.xs.Read(d.remote.Path + "/ring-ref")
	}
	if err != nil {
		if isXenstoreQuota(err) {
			return 0, 0, explainXenstore(err) // waiting will not cure it
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EACCES) {
			return 0, 0, fmt.Errorf("%w: %w: %v", errRetry, errNotPublished, err)
		}
		return 0, 0, fmt.Errorf("%w: %v", errRetry, err)
	}
	if !bytes.Equal(refV, refAgain) {
		return 0, 0, fmt.Errorf("%w: %s/ring-ref changed from %q to %q while reading event-channel (the server published a fresh ring)",
			errRetry, d.remote.Path, truncate(refV), truncate(refAgain))
	}
	r, err := parseDecimal(refV, 1<<32-1)
	if err == nil && r == 0 {
		err = fmt.Errorf("%w: grant reference 0", ErrProtocol)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%s/ring-ref: %w", d.remote.Path, err)
	}
	p, err := parseDecimal(portV, 1<<32-1)
	if err == nil && p == 0 {
		err = fmt.Errorf("%w: event channel port 0", ErrProtocol)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%s/event-channel: %w", d.remote.Path, err)
	}
	return uint32(r), uint32(p), nil
}

// waitError reports why a wait ended, keeping Timeout() visible through
// *net.OpError (which asks its Err directly, not the chain).
type waitError struct {
	msg string
	err error
}

func (e *waitError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *waitError) Unwrap() error { return e.err }

// Timeout reports whether the wait ended at a deadline.
func (e *waitError) Timeout() bool { return errors.Is(e.err, os.ErrDeadlineExceeded) }
