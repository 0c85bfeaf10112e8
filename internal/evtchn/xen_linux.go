//go:build linux

package evtchn

// The real event channel device, /dev/xen/evtchn (docs/PROTOCOL.md §12).
//
// Every channel has a device handle of its own, as every libxenvchan
// connection has. The handle's descriptor is non-blocking and joins Go's
// runtime poller, and the goroutine that waits for an event reads the
// pending port from it itself (Channel.Wait). One handle shared by the process
// would need a router goroutine to hand each event to its waiter, and that
// hand-off wakes a second thread, which on a virtual machine costs more than
// the event (the README's Performance section has the figures).
//
// With one port per handle, the driver's ring holds that port at most once:
// the driver masks a port when it fires and queues it, and it fires again
// only after the waiter writes it back to unmask it. So one read drains the
// ring, and the next event is a fresh transition of the ring from empty to
// non-empty, the only one on which the driver wakes the poller
// (evtchn_interrupt). A handle with many ports would have to read until
// EAGAIN before waiting: an event that lands while a read copies the ring
// out gets no wake-up of its own (seen on real Xen with a shared handle).
//
// A wait first blocks in ppoll on the handle for a short window
// (internal/blockwait), where a wake-up costs the ppoll, the read and the
// unmask, as libxenvchan's blocking read and unmask do; only a channel that
// stays quiet longer moves to the runtime poller (where a process with one
// P waits at once: see internal/blockwait).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/blockwait"
	"github.com/vchan-go/vchan/internal/xendev"
)

// devPath is the event channel device; evtchnDev names it and its module in
// open errors.
const devPath = "/dev/xen/evtchn"

var evtchnDev = xendev.Device{Path: devPath, Module: "xen-evtchn"}

// ioctl request numbers, _IOC(_IOC_NONE, 'E', nr, sizeof(struct)).
// layout_linux_test.go checks them against <xen/evtchn.h>; the values are
// those of docs/PROTOCOL.md §12.
var (
	// IOCTL_EVTCHN_BIND_INTERDOMAIN = 0x00084501.
	ioctlBindInterdomain = xendev.IOCNone('E', 1, unsafe.Sizeof(bindInterdomainArg{}))
	// IOCTL_EVTCHN_BIND_UNBOUND_PORT = 0x00044502.
	ioctlBindUnboundPort = xendev.IOCNone('E', 2, unsafe.Sizeof(bindUnboundPortArg{}))
	// IOCTL_EVTCHN_UNBIND = 0x00044503.
	ioctlUnbind = xendev.IOCNone('E', 3, unsafe.Sizeof(unbindArg{}))
	// IOCTL_EVTCHN_NOTIFY = 0x00044504.
	ioctlNotify = xendev.IOCNone('E', 4, unsafe.Sizeof(notifyArg{}))
	// IOCTL_EVTCHN_RESET = 0x00004505: no argument.
	ioctlReset = xendev.IOCNone('E', 5, 0)
)

// bindInterdomainArg is struct ioctl_evtchn_bind_interdomain.
type bindInterdomainArg struct {
	RemoteDomain uint32
	RemotePort   uint32
}

// bindUnboundPortArg is struct ioctl_evtchn_bind_unbound_port.
type bindUnboundPortArg struct {
	RemoteDomain uint32
}

// unbindArg is struct ioctl_evtchn_unbind.
type unbindArg struct {
	Port uint32
}

// notifyArg is struct ioctl_evtchn_notify.
type notifyArg struct {
	Port uint32
}

// sysCalls are the device operations that tests replace: opening a handle,
// the ioctls, the reads and the port status query. Writes (the unmasks)
// and the poller work on any descriptor.
type sysCalls struct {
	open  func() (int, error)
	ioctl func(fd int, req uintptr, arg unsafe.Pointer) (int, error)
	// quickIoctl makes the ioctls of a bound port (notify, reset), which
	// never wait in the kernel.
	quickIoctl func(fd int, req uintptr, arg unsafe.Pointer) (int, error)
	read       func(fd int, p []byte) (int, error) // on the non-blocking handle
	portStatus func(port Port) (interdomain bool, err error)
}

var realSys = sysCalls{open: openDevice, ioctl: xendev.Ioctl, quickIoctl: xendev.IoctlNoWait, read: readNoWait, portStatus: realPortStatus}

// readNoWait and writeNoWait are read and write on the handle, which never
// wait in the kernel (it is non-blocking: an empty read fails with EAGAIN;
// a write unmasks ports), made without telling the runtime, for the reason
// xendev.IoctlNoWait gives.
func readNoWait(fd int, p []byte) (int, error)  { return ioNoWait(unix.SYS_READ, fd, p) }
func writeNoWait(fd int, p []byte) (int, error) { return ioNoWait(unix.SYS_WRITE, fd, p) }

func ioNoWait(trap uintptr, fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// openDevice opens a handle of /dev/xen/evtchn as libxenevtchn does, but
// non-blocking, so that the runtime poller can wait for it (docs/PROTOCOL.md
// §12).
func openDevice() (int, error) {
	return xendev.Open(evtchnDev, unix.O_NONBLOCK)
}

// bindError explains a failed bind ioctl.
func bindError(what string, errno error) error {
	switch {
	case errors.Is(errno, unix.ENOSPC):
		return fmt.Errorf("evtchn: %s: %w: this domain has no free event channel port "+
			"(raise max_event_channels in its Xen configuration, or close unused channels)", what, errno)
	case errors.Is(errno, unix.EACCES):
		return fmt.Errorf("evtchn: %s: %w: this /dev/xen/evtchn handle is restricted to another domain", what, errno)
	}
	return fmt.Errorf("evtchn: %s: %w", what, errno)
}

// bindInterdomainError explains a failed IOCTL_EVTCHN_BIND_INTERDOMAIN. Xen
// answers EINVAL when the remote port does not exist, is not unbound, or was
// offered to another domain, and ESRCH when the remote domain does not
// exist.
func bindInterdomainError(remote uint16, remotePort Port, errno error) error {
	what := fmt.Sprintf("bind to port %d of domain %d", remotePort, remote)
	if errors.Is(errno, unix.EINVAL) || errors.Is(errno, unix.ESRCH) {
		return fmt.Errorf("evtchn: %s: %w: %w: the port does not exist, is not unbound, "+
			"or was not offered to this domain (or the domain does not exist)", what, ErrNotBindable, errno)
	}
	return bindError(what, errno)
}

// notifyError explains a failed IOCTL_EVTCHN_NOTIFY.
func notifyError(port Port, errno error) error {
	if errors.Is(errno, unix.ENOTCONN) {
		return fmt.Errorf("evtchn: notify port %d: %w: the port is not bound through this process's /dev/xen/evtchn handle", port, errno)
	}
	return fmt.Errorf("evtchn: notify port %d: %w", port, errno)
}

// Open returns a Device over /dev/xen/evtchn. It opens the device once to
// report at once what is missing; each channel then opens a handle of its
// own.
func Open() (Device, error) {
	return openWith(realSys)
}

func openWith(sys sysCalls) (Device, error) {
	fd, err := sys.open()
	if err != nil {
		return nil, err
	}
	unix.Close(fd)
	return &device{sys: sys}, nil
}

// device implements Device.
type device struct {
	sys    sysCalls
	mu     sync.Mutex
	closed bool
}

// BindUnbound allocates a port that only domain remote may bind
// (IOCTL_EVTCHN_BIND_UNBOUND_PORT).
func (d *device) BindUnbound(remote uint16) (Channel, error) {
	arg := bindUnboundPortArg{RemoteDomain: uint32(remote)}
	return d.bind(ioctlBindUnboundPort, unsafe.Pointer(&arg), func(errno error) error {
		return bindError(fmt.Sprintf("allocate a port for domain %d", remote), errno)
	})
}

// BindInterdomain connects a new local port to remotePort of domain remote
// (IOCTL_EVTCHN_BIND_INTERDOMAIN).
func (d *device) BindInterdomain(remote uint16, remotePort Port) (Channel, error) {
	arg := bindInterdomainArg{RemoteDomain: uint32(remote), RemotePort: uint32(remotePort)}
	return d.bind(ioctlBindInterdomain, unsafe.Pointer(&arg), func(errno error) error {
		return bindInterdomainError(remote, remotePort, errno)
	})
}

// bind opens a handle, runs a bind ioctl on it and returns the channel.
func (d *device) bind(req uintptr, arg unsafe.Pointer, explain func(error) error) (Channel, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	fd, err := d.sys.open()
	if err != nil {
		return nil, err
	}
	port, err := d.sys.ioctl(fd, req, arg)
	if err != nil {
		unix.Close(fd)
		return nil, explain(err)
	}
	c := &channel{sys: d.sys, fd: fd, port: Port(port),
		notify: notifyArg{Port: uint32(port)}, seenBound: req == ioctlBindInterdomain}
	binary.NativeEndian.PutUint32(c.portBytes[:], uint32(port))
	// The handle stays out of the runtime poller, which every event would
	// wake while Wait blocks in ppoll; a wait in the poller opens the gate
	// to it (internal/blockwait).
	if c.file, err = blockwait.Unpolled(fd, devPath); err != nil {
		return nil, fmt.Errorf("evtchn: port %d: %w", port, err)
	}
	if c.gate, err = blockwait.NewGate(fd, devPath); err != nil {
		c.file.Close()
		return nil, fmt.Errorf("evtchn: port %d: %w", port, err)
	}
	c.pollTake = c.takeFromPoller
	// Without an eventfd (no descriptor left) every wait uses the poller.
	c.waiter, _ = blockwait.New()
	// Ports start enabled, but libxenvchan unmasks once after binding;
	// doing the same is harmless (docs/PROTOCOL.md §12). A failure here changes
	// nothing, so it is not reported.
	_, _ = unix.Write(fd, c.portBytes[:])
	return c, nil
}

// Close marks the Device closed; its channels stay usable until they are
// closed.
func (d *device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	return nil
}

// channel implements Channel: one port bound on a handle of its own.
type channel struct {
	sys       sysCalls
	fd        int               // the handle: ioctls while open (under mu)
	file      *os.File          // the same descriptor, not in the runtime poller
	gate      *blockwait.Gate   // through which the runtime poller sees it
	waiter    *blockwait.Waiter // the first, blocking phase of Wait; nil if none
	port      Port
	portBytes [4]byte // the port as the driver reads and unmasks it
	// Notify's ioctl argument, read-only after bind: one on Notify's stack
	// would escape to the heap through the indirect ioctl call, an
	// allocation per event sent.
	notify notifyArg
	// Wait's callback for the runtime poller and what it saw, made once
	// at bind: a closure made in each Wait would allocate.
	pollTake func(fd uintptr) bool
	pollErr  error

	interrupted atomic.Bool           // see Interrupt
	statusArmed atomic.Bool           // the poller's deadline is a status check's (armPoll)
	failure     atomic.Pointer[error] // a failed unmask, sticky
	buf         [64]byte              // for Wait, one goroutine at a time

	// Wait's peer checks (see checkPeer), by the one goroutine in Wait.
	seenBound bool // the port has been connected to a remote port
	noStatus  bool // Xen cannot be asked: no more checks

	mu     sync.RWMutex // Notify holds it shared, Close exclusively
	closed bool
}

// LocalPort is this domain's end of the channel.
func (c *channel) LocalPort() Port { return c.port }

// Wait blocks until the port fires, then reads it from the handle and
// writes it back to unmask it (docs/PROTOCOL.md §12): first in ppoll for up
// to blockwait.Window, then in the runtime poller.
func (c *channel) Wait(deadline time.Time) error {
	if err := c.failed(); err != nil {
		return err
	}
	if c.interrupted.Swap(false) {
		c.clearWake()
		return nil
	}
	if done, err := c.waitBlocking(deadline); done {
		return err
	}
	if err := c.gate.Open(); err != nil {
		return fmt.Errorf("evtchn: wait on port %d: %w", c.port, err)
	}
	defer c.gate.Shut()
	// A long wait also asks Xen, every statusInterval, whether the remote
	// end is still bound: nothing else wakes a domU whose peer domain
	// was destroyed. While it is (or Xen cannot tell), the wait goes on.
	for {
		// statusArmed implies a status check may be asked (noStatus is
		// set only after the deadline that cleared it).
		ownCheck := deadline.IsZero() && c.statusArmed.Load()
		if !ownCheck {
			var err error
			if ownCheck, err = c.armPoll(deadline); err != nil {
				return err
			}
		}
		if c.interrupted.Swap(false) {
			c.clearWake()
			return nil
		}
		c.pollErr = nil
		err := c.gate.Wait(c.pollTake)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.statusArmed.Store(false)
			if c.interrupted.Swap(false) {
				c.clearWake()
				return nil
			}
			if ownCheck && (deadline.IsZero() || time.Now().Before(deadline)) {
				// The check's time, not the caller's deadline.
				if err := c.checkPeer(); err != nil {
					return err
				}
				continue
			}
			return os.ErrDeadlineExceeded
		}
		if err != nil {
			return fmt.Errorf("evtchn: wait on port %d: %w", c.port, err)
		}
		return c.pollErr
	}
}

// armPoll sets the handle's deadline in the runtime poller for a Wait with
// the caller's deadline (the zero time: none), or the status check's if
// that comes first, and reports whether it set the status check's. Without
// a caller's deadline, the status check's stays set for the Waits that
// follow, until it passes or Interrupt replaces it (statusArmed): setting
// it reads the clock several times, each a system call under a Xen PV clock
// without a vDSO, and a connection on one P waits in the poller once for
// every event (docs/PERFORMANCE.md).
func (c *channel) armPoll(deadline time.Time) (status bool, err error) {
	pollDeadline := deadline
	if !c.noStatus {
		if at := time.Now().Add(statusInterval); deadline.IsZero() || at.Before(deadline) {
			pollDeadline, status = at, true
		}
	}
	// An Interrupt between these lines may leave a past deadline marked
	// as the status check's: the next Wait then makes one status query
	// early and arms again.
	c.statusArmed.Store(false)
	if err := c.gate.SetDeadline(pollDeadline); err != nil {
		return false, fmt.Errorf("evtchn: wait on port %d: %w", c.port, err)
	}
	c.statusArmed.Store(status && deadline.IsZero())
	return status, nil
}

// takeFromPoller is Wait's callback for the runtime poller: it takes a
// pending event, and reports false (wait in the poller) when there is none.
func (c *channel) takeFromPoller(fd uintptr) bool {
	taken, err := c.take(int(fd))
	c.pollErr = err
	return taken
}

// statusInterval is how often a blocked Wait asks Xen whether the remote
// end is still bound; a variable for the tests.
var statusInterval = time.Second

// checkPeer asks Xen whether the port is still connected. A port that was
// connected and is no longer is ErrPeerGone. Otherwise it returns nil, and
// Wait waits on. If Xen cannot be asked, the channel stops asking.
func (c *channel) checkPeer() error {
	bound, err := c.sys.portStatus(c.port)
	switch {
	case err != nil:
		c.noStatus = true
	case bound:
		c.seenBound = true
	case c.seenBound:
		return fmt.Errorf("evtchn: port %d: %w", c.port, ErrPeerGone)
	}
	return nil
}

// blockingWindow is blockwait.Window; a variable for the tests.
var blockingWindow = blockwait.Window

// waitBlocking is Wait's first phase: ppoll on the handle until an event,
// an Interrupt, the deadline or the end of the window. It reports done
// false when the wait must go on in the runtime poller: the window (or the
// deadline, which the poller then reports) passed, or the process has its
// share of blocking waits already.
func (c *channel) waitBlocking(deadline time.Time) (done bool, err error) {
	if c.waiter == nil || !blockwait.Acquire() {
		return false, nil
	}
	defer blockwait.Release()
	window, ok := blockwait.Budget(blockingWindow, deadline)
	if !ok {
		return false, nil
	}
	res, err := c.waiter.Wait(c.fd, window)
	switch {
	case err != nil || res == blockwait.Timeout:
		return false, nil
	case res == blockwait.Woken:
		c.interrupted.Store(false)
		return true, nil
	}
	// Readable. Not taken means another reader of the handle won the race,
	// which Wait's single caller rules out: a spurious wake-up, harmless.
	_, err = c.take(c.fd)
	return true, err
}

// clearWake forgets the Interrupt that Wait has just reported, so that the
// next Wait's blocking phase does not report it again.
func (c *channel) clearWake() {
	if c.waiter != nil {
		c.waiter.Clear()
	}
}

// take reads a pending port from the handle and unmasks it. It reports
// taken false when nothing is pending (EAGAIN); any error is final for this
// Wait.
func (c *channel) take(fd int) (taken bool, err error) {
	for {
		n, err := c.sys.read(fd, c.buf[:])
		switch {
		case n >= 4:
			return true, c.unmask(fd)
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false, nil
		case err == unix.EFBIG:
			// The ring overflowed, which one port cannot do; survive it
			// anyway: RESET clears the error, and the port, whose event
			// was dropped, is unmasked and reported.
			if _, err := c.sys.quickIoctl(fd, ioctlReset, nil); err != nil {
				return true, c.fail(fmt.Errorf("evtchn: reset after overflow: %w", err))
			}
			return true, c.unmask(fd)
		default:
			if err == nil {
				err = io.ErrUnexpectedEOF // the device never reads 0 bytes
			}
			return true, fmt.Errorf("evtchn: read port %d: %w", c.port, err)
		}
	}
}

// unmask writes the port back to the handle. A port left masked never fires
// again, so a failure is sticky: every later Wait reports it.
func (c *channel) unmask(fd int) error {
	for {
		_, err := writeNoWait(fd, c.portBytes[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return c.fail(fmt.Errorf("evtchn: unmask port %d: %w", c.port, err))
		}
		return nil
	}
}

func (c *channel) fail(err error) error {
	c.failure.CompareAndSwap(nil, &err)
	return err
}

// failed reports a failed unmask: the port can no longer fire.
func (c *channel) failed() error {
	if p := c.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Interrupt ends the current Wait, or makes the next one return at once.
func (c *channel) Interrupt() {
	c.interrupted.Store(true)
	c.statusArmed.Store(false)
	if c.waiter != nil {
		c.waiter.Wake()
	}
	_ = c.gate.SetDeadline(aLongTimeAgo) // fails only once closed
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked Wait.
var aLongTimeAgo = time.Unix(1, 0)

// Notify sends an event to the remote end (IOCTL_EVTCHN_NOTIFY).
func (c *channel) Notify() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	if _, err := c.sys.quickIoctl(c.fd, ioctlNotify, unsafe.Pointer(&c.notify)); err != nil {
		return notifyError(c.port, err)
	}
	return nil
}

// Close closes the channel's handle, which unbinds its port
// (evtchn_release, docs/PROTOCOL.md §12). No Wait may be in progress.
func (c *channel) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closed = true
	if c.waiter != nil {
		c.waiter.Close()
	}
	c.gate.Close()
	if err := c.file.Close(); err != nil {
		return fmt.Errorf("evtchn: close the handle of port %d: %w", c.port, err)
	}
	return nil
}
