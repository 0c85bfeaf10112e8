//go:build linux

package evtchn

// The real event channel device, /dev/xen/evtchn (PROTOCOL.md §12).
//
// One open device handle serves the whole process: every Device returned by
// Open shares it, and one router goroutine reads the pending ports from it
// and wakes the matching Channels. libxenvchan opens one handle per
// connection instead; routing keeps the process at one descriptor, one
// kernel ring and one goroutine however many vchans it has.
//
// The router waits in Go's runtime poller: the descriptor is non-blocking,
// the driver implements poll, and a non-blocking descriptor given to
// os.NewFile joins the poller. Closing that os.File wakes the router, so no
// goroutine outlives the last Close.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	devPath   = "/dev/xen/evtchn"
	devModule = "xen-evtchn"

	// readSize is the router's read buffer: one page, the most the driver
	// returns or accepts per call (PROTOCOL.md §12).
	readSize = 4096

	// maxBackoff caps the router's pause between attempts when the device
	// keeps failing.
	maxBackoff = 100 * time.Millisecond
)

// ioctl request numbers: _IOC(_IOC_NONE, 'E', nr, sizeof(struct)) in the
// asm-generic encoding used on x86 and Arm (dir<<30 | size<<16 | type<<8 |
// nr, _IOC_NONE = 0). layout_linux_test.go checks them against
// <xen/evtchn.h>; the values are those of PROTOCOL.md §12.
const (
	iocNone      = 0
	iocDirShift  = 30
	iocSizeShift = 16
	iocTypeShift = 8

	// IOCTL_EVTCHN_BIND_INTERDOMAIN = 0x00084501.
	ioctlBindInterdomain = iocNone<<iocDirShift | unsafe.Sizeof(bindInterdomainArg{})<<iocSizeShift | 'E'<<iocTypeShift | 1
	// IOCTL_EVTCHN_BIND_UNBOUND_PORT = 0x00044502.
	ioctlBindUnboundPort = iocNone<<iocDirShift | unsafe.Sizeof(bindUnboundPortArg{})<<iocSizeShift | 'E'<<iocTypeShift | 2
	// IOCTL_EVTCHN_UNBIND = 0x00044503.
	ioctlUnbind = iocNone<<iocDirShift | unsafe.Sizeof(unbindArg{})<<iocSizeShift | 'E'<<iocTypeShift | 3
	// IOCTL_EVTCHN_NOTIFY = 0x00044504.
	ioctlNotify = iocNone<<iocDirShift | unsafe.Sizeof(notifyArg{})<<iocSizeShift | 'E'<<iocTypeShift | 4
	// IOCTL_EVTCHN_RESET = 0x00004505: no argument.
	ioctlReset = iocNone<<iocDirShift | 0<<iocSizeShift | 'E'<<iocTypeShift | 5
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

// ioctl issues one ioctl and returns its result: the bind ioctls return the
// new local port as the system call's return value (PROTOCOL.md §12). The
// conversion to uintptr is written in the call to unix.Syscall so that the
// argument stays alive and in place for the call (package unsafe, rule 4).
func ioctl(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return -1, e
	}
}

// sysCalls are the device operations that tests replace: the ioctls, and
// the direct reads the router makes while it recovers. Everything else
// (write, dup, the poller) works on any descriptor.
type sysCalls struct {
	ioctl func(fd int, req uintptr, arg unsafe.Pointer) (int, error)
	read  func(fd int, p []byte) (int, error)
}

var realSys = sysCalls{ioctl: ioctl, read: unix.Read}

// openError explains a failed open of /dev/xen/evtchn: what is missing and
// how to fix it.
func openError(errno error) error {
	pe := &os.PathError{Op: "open", Path: devPath, Err: errno}
	var hint string
	switch {
	case errors.Is(errno, unix.ENOENT):
		hint = fmt.Sprintf("not running under Xen, or the %s module is not loaded (try: modprobe %s)", devModule, devModule)
	case errors.Is(errno, unix.EACCES), errors.Is(errno, unix.EPERM):
		hint = "run as root or give this user access to " + devPath
	case errors.Is(errno, unix.ENODEV), errors.Is(errno, unix.ENXIO):
		hint = fmt.Sprintf("the device node exists but no driver serves it: the %s module is not loaded, "+
			"or this is not a Xen domain (the module refuses to load outside Xen; try: modprobe %s)", devModule, devModule)
	default:
		return pe
	}
	return fmt.Errorf("%w: %s", pe, hint)
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

// registry holds the process's one device handle.
var registry struct {
	mu sync.Mutex
	h  *handle
}

// Open returns a Device over /dev/xen/evtchn. The first Open opens the
// device; later ones share it until the last Device and the last Channel
// are closed.
func Open() (Device, error) {
	return openShared(openReal)
}

// openReal opens /dev/xen/evtchn as libxenevtchn does, but non-blocking so
// the router can wait in the runtime poller (PROTOCOL.md §12).
func openReal() (*handle, error) {
	var (
		fd  int
		err error
	)
	for {
		fd, err = unix.Open(devPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, openError(err)
	}
	h, err := newHandle(fd, devPath, realSys)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return h, nil
}

// openShared returns a Device on the shared handle, opening one with open
// if there is none.
func openShared(open func() (*handle, error)) (Device, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.h == nil {
		h, err := open()
		if err != nil {
			return nil, err
		}
		h.registered = true
		registry.h = h
	}
	registry.h.refs++
	return &device{h: registry.h}, nil
}

// handle is one open event channel device and its router.
type handle struct {
	fd   int      // the device: ioctls, unmask writes, direct reads
	name string   // for os.NewFile
	sys  sysCalls // how to reach the device

	// refs counts the Devices and Channels using the handle; registered
	// says whether it is registry.h. Both are guarded by registry.mu.
	refs       int
	registered bool

	mu      sync.Mutex
	ports   map[Port]*channel // bound ports, for the router
	rd      *os.File          // a duplicate of fd in the runtime poller, read by the router
	closing bool

	stop chan struct{} // closed by shutdown
	done chan struct{} // closed when the router returns
}

// newHandle starts routing events from fd, a non-blocking event channel
// device (or, in tests, anything that reads and writes whole u32 ports).
// The handle owns fd from now on, but has no references yet.
func newHandle(fd int, name string, sys sysCalls) (*handle, error) {
	h := &handle{
		fd:    fd,
		name:  name,
		sys:   sys,
		ports: make(map[Port]*channel),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	rd, err := h.pollFile()
	if err != nil {
		return nil, err
	}
	h.rd = rd
	go h.route(rd)
	return h, nil
}

// pollFile returns a fresh duplicate of the device descriptor registered
// with the runtime poller. The duplicate shares the open file, so it reads
// the same pending ports; it is only ever read, by the router.
func (h *handle) pollFile() (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("evtchn: duplicate the %s descriptor: %w", h.name, err)
	}
	return os.NewFile(uintptr(fd), h.name), nil
}

// acquire adds a reference; the caller must already hold one.
func (h *handle) acquire() {
	registry.mu.Lock()
	h.refs++
	registry.mu.Unlock()
}

// release drops a reference and shuts the handle down with the last one.
func (h *handle) release() error {
	registry.mu.Lock()
	h.refs--
	last := h.refs == 0
	if last && h.registered {
		// The next Open opens a new handle; this one goes away below.
		registry.h = nil
		h.registered = false
	}
	registry.mu.Unlock()
	if !last {
		return nil
	}
	return h.shutdown()
}

// shutdown stops the router, waits for it, and closes the device, which
// unbinds any port still bound (PROTOCOL.md §12).
func (h *handle) shutdown() error {
	h.mu.Lock()
	h.closing = true
	rd := h.rd
	h.mu.Unlock()
	close(h.stop)
	rd.Close() // wakes the router's Read with os.ErrClosed
	<-h.done
	if err := unix.Close(h.fd); err != nil {
		return fmt.Errorf("evtchn: close %s: %w", h.name, err)
	}
	return nil
}

// bind runs a bind ioctl and registers the new port. The lock is held
// across the ioctl so that the router, which takes it to look ports up,
// cannot see an event for the port before its channel exists.
func (h *handle) bind(req uintptr, arg unsafe.Pointer, explain func(error) error) (*channel, error) {
	h.mu.Lock()
	port, err := h.sys.ioctl(h.fd, req, arg)
	if err != nil {
		h.mu.Unlock()
		return nil, explain(err)
	}
	c := &channel{h: h, port: Port(port), events: make(chan struct{}, 1)}
	h.ports[c.port] = c
	h.mu.Unlock()
	h.acquire()

	// Ports start enabled, but libxenvchan unmasks once after binding;
	// doing the same is harmless (PROTOCOL.md §12). A failure here changes
	// nothing, so it is not reported.
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(port))
	_, _ = unix.Write(h.fd, b[:])
	return c, nil
}

// dispatch decodes the pending ports in buf (whole native-endian u32s, as
// the driver's read returns them), calls wake for each one in order, and
// returns the bytes to write back to the device to unmask them. Every port
// read is unmasked, including ports no channel knows any more: the driver
// ignores ports it does not have bound for this handle.
func dispatch(buf []byte, wake func(Port)) (unmask []byte) {
	n := len(buf) &^ 3
	for i := 0; i < n; i += 4 {
		wake(Port(binary.NativeEndian.Uint32(buf[i:])))
	}
	return buf[:n]
}

// wakeLocked sets the pending bit of port's channel, if there is one: a
// non-blocking send on its one-slot Events channel, so events coalesce.
// h.mu must be held.
func (h *handle) wakeLocked(port Port) {
	if c := h.ports[port]; c != nil {
		select {
		case c.events <- struct{}{}:
		default:
		}
	}
}

// wakeAll wakes every channel: after lost events, spurious wake-ups are the
// safe answer.
func (h *handle) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port := range h.ports {
		h.wakeLocked(port)
	}
}

// deliver wakes the channels of the ports in buf, then unmasks the ports.
func (h *handle) deliver(buf []byte) {
	h.mu.Lock()
	unmask := dispatch(buf, h.wakeLocked)
	h.mu.Unlock()
	h.unmask(unmask)
}

// unmask writes ports back to the device to re-enable them (PROTOCOL.md
// §12). A port left masked would never fire again, so failures are retried
// until they succeed or the handle shuts down.
func (h *handle) unmask(p []byte) {
	for failures := 0; len(p) > 0; {
		n, err := unix.Write(h.fd, p)
		if n > 0 {
			p = p[n:]
			continue
		}
		if err == unix.EINTR {
			continue
		}
		failures++
		if !h.sleep(backoff(failures)) {
			return
		}
	}
}

// unmaskAll unmasks every bound port, one page of ports per write.
func (h *handle) unmaskAll() {
	h.mu.Lock()
	ports := make([]Port, 0, len(h.ports))
	for port := range h.ports {
		ports = append(ports, port)
	}
	h.mu.Unlock()
	slices.Sort(ports)
	buf := make([]byte, 0, readSize)
	for i, port := range ports {
		buf = binary.NativeEndian.AppendUint32(buf, uint32(port))
		if len(buf) == readSize || i == len(ports)-1 {
			h.unmask(buf)
			buf = buf[:0]
		}
	}
}

// sleep pauses for d, or returns false at once if the handle shuts down.
func (h *handle) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-h.stop:
		return false
	case <-t.C:
		return true
	}
}

// backoff is the pause after the given number of consecutive failures.
func backoff(failures int) time.Duration {
	if failures > 8 {
		return maxBackoff
	}
	return min(time.Millisecond<<(failures-1), maxBackoff)
}

// isClosing reports whether shutdown has begun.
func (h *handle) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// route is the router goroutine: it reads pending ports through the
// poller, wakes their channels and unmasks them, until shutdown.
//
// It reads until EAGAIN before it waits (rd.Read does so), even after a
// read that did not fill buf: the driver wakes waiters, and so gives the
// poller an edge, only when its ring goes from empty to non-empty
// (evtchn_interrupt), and an event that lands while a read is copying out
// the ring gets no wake-up of its own. A router that trusted short reads
// lost events on real Xen (2026-11-25, the lab's TestRealDevice).
func (h *handle) route(rd *os.File) {
	defer close(h.done)
	buf := make([]byte, readSize)
	failures := 0
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			failures = 0
			h.deliver(buf[:n])
			continue
		}
		if h.isClosing() {
			return
		}
		failures++
		if failures > 1 && !h.sleep(backoff(failures-1)) {
			return
		}
		if rd = h.recover(rd, buf, err); rd == nil {
			return
		}
	}
}

// recover handles a failed read and returns the file to read next, nil on
// shutdown.
//
// The usual cause is EFBIG: the driver's ring of pending ports overflowed,
// and reads fail until IOCTL_EVTCHN_RESET. RESET only empties the ring and
// clears the error; ports stay bound (header <xen/evtchn.h> and the
// driver's evtchn_ioctl, PROTOCOL.md §12). But each port whose event was
// dropped stays masked, so all bound ports are unmasked afterwards, and
// every channel is woken because events were lost.
//
// On overflow the driver's poll reports only EPOLLERR, and Go's poller then
// keeps failing reads of that file ("not pollable") until a later poll
// event clears the mark, which may never come while ports are masked. So
// the ring is drained with direct reads on the device, and the router goes
// on with a fresh duplicate of the descriptor, registered anew. Errors the
// router does not understand take the same path, after a back-off.
func (h *handle) recover(rd *os.File, buf []byte, cause error) *os.File {
	overflow := errors.Is(cause, unix.EFBIG)
	reset := false
	for range 64 {
		n, err := h.sys.read(h.fd, buf)
		if n > 0 {
			h.deliver(buf[:n])
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EFBIG && !reset {
			overflow = true
			if _, err := h.sys.ioctl(h.fd, ioctlReset, nil); err != nil {
				break
			}
			reset = true
			continue
		}
		break // EAGAIN: drained; anything else: retried after a back-off
	}
	if overflow {
		h.unmaskAll()
	}
	h.wakeAll()

	nrd, err := h.pollFile()
	if err != nil {
		return rd // try again after a back-off
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		nrd.Close()
		return nil
	}
	h.rd = nrd
	h.mu.Unlock()
	rd.Close()
	return nrd
}

// device implements Device on the shared handle.
type device struct {
	h      *handle
	mu     sync.Mutex
	closed bool
}

// BindUnbound allocates a port that only domain remote may bind
// (IOCTL_EVTCHN_BIND_UNBOUND_PORT).
func (d *device) BindUnbound(remote uint16) (Channel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	arg := bindUnboundPortArg{RemoteDomain: uint32(remote)}
	c, err := d.h.bind(ioctlBindUnboundPort, unsafe.Pointer(&arg), func(errno error) error {
		return bindError(fmt.Sprintf("allocate a port for domain %d", remote), errno)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// BindInterdomain connects a new local port to remotePort of domain remote
// (IOCTL_EVTCHN_BIND_INTERDOMAIN).
func (d *device) BindInterdomain(remote uint16, remotePort Port) (Channel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	arg := bindInterdomainArg{RemoteDomain: uint32(remote), RemotePort: uint32(remotePort)}
	c, err := d.h.bind(ioctlBindInterdomain, unsafe.Pointer(&arg), func(errno error) error {
		return bindInterdomainError(remote, remotePort, errno)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close releases this Device's hold on the shared handle; its channels stay
// usable until they are closed.
func (d *device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	return d.h.release()
}

// channel implements Channel: one bound port of the shared handle.
type channel struct {
	h      *handle
	port   Port
	events chan struct{} // the pending bit: capacity 1

	mu     sync.RWMutex // Notify holds it shared, Close exclusively
	closed bool
}

// LocalPort is this domain's end of the channel.
func (c *channel) LocalPort() Port { return c.port }

// Events delivers one value per batch of events received.
func (c *channel) Events() <-chan struct{} { return c.events }

// Notify sends an event to the remote end (IOCTL_EVTCHN_NOTIFY).
func (c *channel) Notify() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	arg := notifyArg{Port: uint32(c.port)}
	if _, err := c.h.sys.ioctl(c.h.fd, ioctlNotify, unsafe.Pointer(&arg)); err != nil {
		return notifyError(c.port, err)
	}
	return nil
}

// Close unbinds the port (IOCTL_EVTCHN_UNBIND) and releases the channel's
// hold on the shared handle.
func (c *channel) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closed = true
	arg := unbindArg{Port: uint32(c.port)}
	_, err := c.h.sys.ioctl(c.h.fd, ioctlUnbind, unsafe.Pointer(&arg))
	if err != nil {
		err = fmt.Errorf("evtchn: unbind port %d: %w", c.port, err)
	}
	c.h.mu.Lock()
	if c.h.ports[c.port] == c {
		delete(c.h.ports, c.port)
	}
	c.h.mu.Unlock()
	return errors.Join(err, c.h.release())
}
