//go:build linux

package simclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
)

// Domain is this process's membership of the simulator as one domain: the
// grant, event channel and xenstore devices of that domain. It is safe for
// concurrent use.
type Domain struct {
	dir   string
	domid uint16
	ctl   *net.UnixConn
	ev    *net.UnixConn

	// callMu serialises requests: one is outstanding at a time.
	callMu sync.Mutex
	buf    []byte
	oob    []byte

	// mu guards the fields below.
	mu     sync.Mutex
	ports  map[evtchn.Port]*channel // bound channels
	xs     []*xsclient.Client
	lost   error // set once the daemon is gone
	closed bool

	watcherDone chan struct{}
	evPeek      int // the event socket again, for daemonGone; closed under mu by Close
}

// Connect joins the simulator in dir (simproto.DefaultDir() if empty) as domain
// domid. The daemon creates the domain if it is new; it lives until the
// last process of the domain closes its Domain or exits.
func Connect(dir string, domid uint16) (*Domain, error) {
	if dir == "" {
		dir = simproto.DefaultDir()
	}
	path := simproto.ControlPath(dir)
	ctl, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT):
			return nil, fmt.Errorf("%w in %s: start it with \"vchan-simd &\" (or set %s)", ErrNotRunning, dir, simproto.DirEnv)
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%w in %s (stale socket %s left by a daemon that died): start it with \"vchan-simd &\" (or set %s)",
				ErrNotRunning, dir, path, simproto.DirEnv)
		}
		return nil, fmt.Errorf("vchan simulator in %s: %w", dir, err)
	}
	d := &Domain{
		dir:         dir,
		domid:       domid,
		ctl:         ctl,
		buf:         make([]byte, simproto.MaxMsg),
		oob:         make([]byte, unix.CmsgSpace(simproto.MaxFDs*4)),
		ports:       make(map[evtchn.Port]*channel),
		watcherDone: make(chan struct{}),
	}
	p, fds, err := d.call("hello", simproto.Msg(nil).U32(simproto.OpHello, simproto.Version, uint32(domid)))
	if err != nil {
		ctl.Close()
		return nil, err
	}
	if version := p.U32(); len(fds) != 1 || version != simproto.Version {
		closeAll(fds)
		ctl.Close()
		return nil, fmt.Errorf("vchan simulator in %s: bad hello reply (protocol version %d, %d descriptors)", dir, version, len(fds))
	}
	// A descriptor of its own for daemonGone's peek, outside the poller.
	d.evPeek, err = unix.FcntlInt(uintptr(fds[0]), unix.F_DUPFD_CLOEXEC, 0)
	f := os.NewFile(uintptr(fds[0]), "vchan-sim-evtchn")
	var fc net.Conn
	if err == nil {
		fc, err = net.FileConn(f) // a non-blocking duplicate in the poller
		if err != nil {
			unix.Close(d.evPeek)
		}
	}
	f.Close()
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("vchan simulator in %s: event socket: %w", dir, err)
	}
	d.ev = fc.(*net.UnixConn)
	go d.watchDaemon()
	return d, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// DomainID returns the domain this process acts as.
func (d *Domain) DomainID() uint16 { return d.domid }

// Dir returns the simulator's directory.
func (d *Domain) Dir() string { return d.dir }

// Xenstore connects to xenstore as this domain, over DIR/dom<N>/xenstored.
// Domain.Close closes the clients it returned.
func (d *Domain) Xenstore() (xenstore.Client, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	c, err := xsclient.DialSocket(simproto.XenstorePath(d.dir, d.domid))
	if err != nil {
		return nil, fmt.Errorf("vchan simulator in %s: xenstore of domain %d: %w", d.dir, d.domid, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return nil, d.closedError()
	}
	d.xs = append(d.xs, c)
	return c, nil
}

// Sharer returns a grant-sharing handle of this domain (gntalloc).
func (d *Domain) Sharer() gnt.Sharer { return &sharer{handle{d: d, kind: "gntalloc"}} }

// Mapper returns a grant-mapping handle of this domain (gntdev).
func (d *Domain) Mapper() gnt.Mapper { return &mapper{handle{d: d, kind: "gntdev"}} }

// Evtchn returns an event channel device of this domain.
func (d *Domain) Evtchn() evtchn.Device { return &device{d: d} }

// Close leaves the simulator: the daemon unmaps what this process still
// has shared or mapped (firing the unmap notifications, as on process exit)
// and unbinds its ports. Memory still mapped here stays readable until its
// Region is closed. No goroutine of the Domain outlives Close.
func (d *Domain) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return d.closedError()
	}
	d.closed = true
	xs := d.xs
	d.xs = nil
	d.mu.Unlock()
	d.ctl.Close() // the daemon unbinds the ports bound through it

	d.ev.Close()
	d.mu.Lock()
	unix.Close(d.evPeek)
	d.mu.Unlock()
	<-d.watcherDone
	for _, c := range xs {
		c.Close()
	}
	d.mu.Lock()
	d.wakeAllLocked()
	d.mu.Unlock()
	return nil
}

func (d *Domain) closedError() error {
	return fmt.Errorf("vchan simulator domain %d: %w", d.domid, os.ErrClosed)
}

// lostError is the error of every call once the daemon is gone.
func (d *Domain) lostError() error {
	return fmt.Errorf("%w: vchan-simd in %s exited or was killed (restart it with \"vchan-simd &\" and reconnect)", ErrConnectionLost, d.dir)
}

// usable returns the error a new call fails with, or nil.
func (d *Domain) usable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return d.closedError()
	}
	return d.lost
}

// notifiable is usable for Notify, which reaches the peer without the
// daemon and so cannot see its loss: it also asks the event socket, without
// waiting, whether the daemon has closed it (one system call, no
// allocation), so that a process told of the loss by its peer's close is
// told of it too, whether or not watchDaemon has run yet.
func (d *Domain) notifiable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return d.closedError()
	}
	if d.lost != nil {
		return d.lost
	}
	var b byte
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(d.evPeek), uintptr(unsafe.Pointer(&b)), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if n == 0 && errno == 0 { // end of file: the daemon is gone
		d.lost = d.lostError()
		d.wakeAllLocked()
		return d.lost
	}
	return nil
}

// wakeAllLocked wakes every channel: after the daemon is lost their
// waiters see a spurious wake-up, and their next call fails. d.mu must be
// held.
func (d *Domain) wakeAllLocked() {
	for _, c := range d.ports {
		c.Interrupt() // its next check reports the closed or lost connection
	}
}

// call sends one request and returns its reply, after the status, and the
// descriptors passed with it, which the caller owns. op names the request
// in errors.
func (d *Domain) call(op string, req simproto.Msg) (*simproto.Parser, []int, error) {
	if err := d.usable(); err != nil {
		return nil, nil, err
	}
	p, fds, ioErr, err := d.exchange(req)
	if ioErr != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		return nil, nil, d.ioErrorLocked(op, ioErr)
	}
	return p, fds, err
}

// exchange sends req and reads the reply. ioErr reports a broken
// connection, err a failure the daemon reported. It does not take d.mu.
func (d *Domain) exchange(req simproto.Msg) (p *simproto.Parser, fds []int, ioErr, err error) {
	d.callMu.Lock()
	defer d.callMu.Unlock()
	if _, _, err := d.ctl.WriteMsgUnix(req, nil, nil); err != nil {
		return nil, nil, err, nil
	}
	n, oobn, flags, _, err := d.ctl.ReadMsgUnix(d.buf, d.oob)
	if oobn > 0 {
		fds = parseRights(d.oob[:oobn])
	}
	if err == nil && n == 0 {
		err = io.EOF // the daemon never sends an empty reply
	}
	if err == nil && (n < 4 || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0) {
		err = fmt.Errorf("bad reply (%d bytes, flags %#x)", n, flags)
	}
	if err != nil {
		closeAll(fds)
		return nil, nil, err, nil
	}
	// A copy: d.buf is reused by the next exchange, which another goroutine
	// may start as soon as callMu is released, while the caller still
	// parses this reply (seen as "map: bad reply" under concurrent
	// Accept and Dial in one process). Only setup calls come here.
	p = &simproto.Parser{B: append([]byte(nil), d.buf[4:n]...)}
	if st := binary.NativeEndian.Uint32(d.buf); st != simproto.StOK {
		closeAll(fds)
		return nil, nil, nil, fmt.Errorf("%s: %w", string(p.B), simproto.Sentinel(st))
	}
	return p, fds, nil, nil
}

// ioErrorLocked turns a failed exchange with the daemon into the error to
// report: closed by Close, or lost. d.mu must be held.
func (d *Domain) ioErrorLocked(op string, cause error) error {
	if d.closed {
		return d.closedError()
	}
	if d.lost == nil {
		d.lost = d.lostError()
		d.wakeAllLocked()
	}
	return fmt.Errorf("%s: %w (%v)", op, d.lost, cause)
}

// parseRights returns the descriptors of SCM_RIGHTS control messages.
func parseRights(oob []byte) []int {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range cmsgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

// watchDaemon reads the event socket of the process's connection until
// EOF, which means the daemon is gone; nothing else arrives on it (events
// ring the ports' bells).
func (d *Domain) watchDaemon() {
	defer close(d.watcherDone)
	var buf [64]byte
	for {
		n, err := d.ev.Read(buf[:])
		if n > 0 && err == nil {
			continue
		}
		d.lostUnlessClosed()
		return
	}
}

func (d *Domain) lostUnlessClosed() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		if d.lost == nil {
			d.lost = d.lostError()
		}
		d.wakeAllLocked()
	}
}
