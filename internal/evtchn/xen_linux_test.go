//go:build linux

package evtchn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// There is no Xen here. The router is tested over a socketpair standing in
// for the device descriptor: the test writes pending ports into one end as
// the driver's read would return them, and reads the router's unmask
// writes from the other. A fake answers the ioctls.

const waitLimit = 5 * time.Second

// fakeDev answers the event channel ioctls and can make the router's direct
// reads fail with EFBIG, as the driver does after its ring overflowed.
type fakeDev struct {
	mu        sync.Mutex
	next      int
	calls     []string
	bindErr   error
	notifyErr error
	efbig     atomic.Int32 // direct reads left to fail with EFBIG
}

func (f *fakeDev) ioctl(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch req {
	case ioctlBindUnboundPort:
		a := (*bindUnboundPortArg)(arg)
		f.calls = append(f.calls, fmt.Sprintf("bind_unbound %d", a.RemoteDomain))
	case ioctlBindInterdomain:
		a := (*bindInterdomainArg)(arg)
		f.calls = append(f.calls, fmt.Sprintf("bind_interdomain %d %d", a.RemoteDomain, a.RemotePort))
	case ioctlNotify:
		f.calls = append(f.calls, fmt.Sprintf("notify %d", (*notifyArg)(arg).Port))
		return 0, f.notifyErr
	case ioctlUnbind:
		f.calls = append(f.calls, fmt.Sprintf("unbind %d", (*unbindArg)(arg).Port))
		return 0, nil
	case ioctlReset:
		if arg != nil {
			panic("RESET takes no argument")
		}
		f.calls = append(f.calls, "reset")
		return 0, nil
	default:
		return -1, unix.ENOTTY
	}
	if f.bindErr != nil {
		return -1, f.bindErr
	}
	port := f.next
	f.next++
	return port, nil
}

func (f *fakeDev) read(fd int, p []byte) (int, error) {
	if f.efbig.Load() > 0 {
		f.efbig.Add(-1)
		return -1, unix.EFBIG
	}
	return unix.Read(fd, p)
}

func (f *fakeDev) called(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, call)
}

// newFake returns a handle over one end of a socketpair, and the other end.
func newFake(t *testing.T) (*handle, int, *fakeDev) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	fake := &fakeDev{next: 10}
	h, err := newHandle(fds[0], "fake-evtchn", sysCalls{ioctl: fake.ioctl, read: fake.read})
	if err != nil {
		t.Fatal(err)
	}
	return h, fds[1], fake
}

// attach returns a Device on h, as Open does on the shared handle.
func attach(h *handle) *device {
	registry.mu.Lock()
	h.refs++
	registry.mu.Unlock()
	return &device{h: h}
}

// send writes pending ports as one read's worth of the driver's ring.
func send(t *testing.T, fd int, ports ...Port) {
	t.Helper()
	var b []byte
	for _, p := range ports {
		b = binary.NativeEndian.AppendUint32(b, uint32(p))
	}
	if err := unix.Sendto(fd, b, unix.MSG_NOSIGNAL, nil); err != nil {
		t.Fatalf("send %v: %v", ports, err)
	}
}

// unmasked reads the next unmask write of the router.
func unmasked(t *testing.T, fd int) []Port {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for deadline := time.Now().Add(waitLimit); ; {
		n, err := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue // the runtime's preemption signals interrupt poll
		}
		if n != 1 || err != nil {
			t.Fatalf("no unmask write within %v (%v)", waitLimit, err)
		}
		break
	}
	b := make([]byte, readSize)
	n, err := unix.Read(fd, b)
	if err != nil {
		t.Fatal(err)
	}
	if n%4 != 0 {
		t.Fatalf("unmask write of %d bytes: not whole ports", n)
	}
	var ports []Port
	for i := 0; i < n; i += 4 {
		ports = append(ports, Port(binary.NativeEndian.Uint32(b[i:])))
	}
	return ports
}

func expectUnmasked(t *testing.T, fd int, want ...Port) {
	t.Helper()
	if got := unmasked(t, fd); !slices.Equal(got, want) {
		t.Fatalf("unmasked %v, want %v", got, want)
	}
}

func expectEvent(t *testing.T, c Channel) {
	t.Helper()
	select {
	case <-c.Events():
	case <-time.After(waitLimit):
		t.Fatalf("port %d: no event within %v", c.LocalPort(), waitLimit)
	}
}

func expectNoEvent(t *testing.T, c Channel) {
	t.Helper()
	select {
	case <-c.Events():
		t.Fatalf("port %d: unexpected event", c.LocalPort())
	case <-time.After(50 * time.Millisecond):
	}
}

// routerParked reports whether a router goroutine is parked in the runtime
// poller, waiting for the descriptor to become readable.
func routerParked() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*handle).route") && strings.Contains(g, "runtime_pollWait") {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDispatch(t *testing.T) {
	var buf []byte
	for _, p := range []uint32{3, 7, 3, 1 << 17} {
		buf = binary.NativeEndian.AppendUint32(buf, p)
	}
	buf = append(buf, 0xff, 0xff) // a partial port, which the driver never returns
	var woken []Port
	unmask := dispatch(buf, func(p Port) { woken = append(woken, p) })
	if want := []Port{3, 7, 3, 1 << 17}; !slices.Equal(woken, want) {
		t.Errorf("woke %v, want %v", woken, want)
	}
	if len(unmask) != 16 || &unmask[0] != &buf[0] {
		t.Errorf("unmask is %d bytes, want the 16 bytes of whole ports read", len(unmask))
	}
	if got := dispatch(nil, func(Port) { t.Error("woke on empty input") }); len(got) != 0 {
		t.Errorf("empty input: unmask %v", got)
	}
}

func TestRouter(t *testing.T) {
	base := runtime.NumGoroutine()
	h, peer, fake := newFake(t)
	d := attach(h)

	c1, err := d.BindUnbound(5)
	if err != nil {
		t.Fatal(err)
	}
	if c1.LocalPort() != 10 || !fake.called("bind_unbound 5") {
		t.Fatalf("BindUnbound: port %d, calls %v", c1.LocalPort(), fake.calls)
	}
	expectUnmasked(t, peer, 10) // the unmask after binding, as libxenvchan does
	c2, err := d.BindInterdomain(6, 77)
	if err != nil {
		t.Fatal(err)
	}
	if c2.LocalPort() != 11 || !fake.called("bind_interdomain 6 77") {
		t.Fatalf("BindInterdomain: port %d, calls %v", c2.LocalPort(), fake.calls)
	}
	expectUnmasked(t, peer, 11)
	waitFor(t, "the router parks in the runtime poller", routerParked)

	// Events coalesce into one wake-up; every port read is unmasked, even
	// one nobody has bound.
	// (The unmask comes after the whole batch is delivered, so waiting for
	// it first leaves exactly one pending event.)
	send(t, peer, 10, 10, 99)
	expectUnmasked(t, peer, 10, 10, 99)
	expectEvent(t, c1)
	expectNoEvent(t, c1)
	expectNoEvent(t, c2)

	send(t, peer, 11)
	expectEvent(t, c2)
	expectUnmasked(t, peer, 11)

	if err := c1.Notify(); err != nil || !fake.called("notify 10") {
		t.Fatalf("Notify = %v, calls %v", err, fake.calls)
	}

	// Ring overflow: the read fails, the direct read says EFBIG, the router
	// resets the ring, unmasks every bound port, wakes every channel, and
	// goes on with a fresh poller registration.
	fake.efbig.Store(1)
	h.mu.Lock()
	rd := h.rd
	h.mu.Unlock()
	rd.SetReadDeadline(time.Now()) // makes the router's read fail
	expectUnmasked(t, peer, 10, 11)
	expectEvent(t, c1)
	expectEvent(t, c2)
	if !fake.called("reset") {
		t.Fatalf("no IOCTL_EVTCHN_RESET after EFBIG: calls %v", fake.calls)
	}
	waitFor(t, "the router replaces its reader", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.rd != rd
	})
	send(t, peer, 11)
	expectEvent(t, c2)
	expectUnmasked(t, peer, 11)
	waitFor(t, "the router parks again", routerParked)

	// A closed channel's port is unbound; late events for it are dropped
	// but still unmasked.
	if err := c1.Close(); err != nil || !fake.called("unbind 10") {
		t.Fatalf("Close = %v, calls %v", err, fake.calls)
	}
	if err := c1.Notify(); !errors.Is(err, ErrClosed) {
		t.Errorf("Notify after Close = %v, want ErrClosed", err)
	}
	if err := c1.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	send(t, peer, 10)
	expectUnmasked(t, peer, 10)
	expectNoEvent(t, c1)

	// The Device goes; its channel stays usable.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.BindUnbound(5); !errors.Is(err, ErrClosed) {
		t.Errorf("BindUnbound after Close = %v, want ErrClosed", err)
	}
	if err := d.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Device Close = %v, want ErrClosed", err)
	}
	send(t, peer, 11)
	expectEvent(t, c2)
	expectUnmasked(t, peer, 11)
	if err := c2.Notify(); err != nil {
		t.Fatal(err)
	}

	// The last Close stops the router before returning and closes every
	// descriptor: the peer end sees the socket closed.
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	default:
		t.Fatal("the last Close returned before the router exited")
	}
	if err := unix.Sendto(peer, []byte{1, 0, 0, 0}, unix.MSG_NOSIGNAL, nil); err != unix.EPIPE {
		t.Errorf("write to the peer after the last Close = %v, want EPIPE (a descriptor leaked)", err)
	}
	waitFor(t, "goroutines return to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}

func TestRouterShutdownWhileUnmaskBlocked(t *testing.T) {
	// If the unmask write keeps failing, the router retries, but Close
	// still stops it.
	base := runtime.NumGoroutine()
	h, peer, _ := newFake(t)
	d := attach(h)
	c, err := d.BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	expectUnmasked(t, peer, 10)
	// Fill the peer's receive buffer so that unmask writes fail (EAGAIN).
	for {
		if err := unix.Sendto(h.fd, make([]byte, 1024), unix.MSG_NOSIGNAL, nil); err != nil {
			break
		}
	}
	send(t, peer, 10)
	expectEvent(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- d.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Close hangs while the router retries an unmask")
	}
	waitFor(t, "goroutines return to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}

func TestSharedHandle(t *testing.T) {
	base := runtime.NumGoroutine()
	opens := 0
	var peers []int
	open := func() (*handle, error) {
		opens++
		h, peer, _ := newFake(t)
		peers = append(peers, peer)
		return h, nil
	}
	d1, err := openShared(open)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := openShared(open)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 1 || d1.(*device).h != d2.(*device).h {
		t.Fatalf("two Devices opened %d handles, want one shared", opens)
	}
	c, err := d1.BindUnbound(3)
	if err != nil {
		t.Fatal(err)
	}
	d1.Close()
	d2.Close()
	// The channel keeps the handle open, and a new Open shares it.
	d3, err := openShared(open)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 1 {
		t.Fatalf("Open while a channel is bound opened a new handle")
	}
	d3.Close()
	c.Close()
	registry.mu.Lock()
	left := registry.h
	registry.mu.Unlock()
	if left != nil {
		t.Fatal("the handle stays registered after the last Close")
	}
	// Now a new Open opens the device again.
	d4, err := openShared(open)
	if err != nil {
		t.Fatal(err)
	}
	if opens != 2 {
		t.Fatalf("Open after the last Close reused a closed handle")
	}
	d4.Close()
	waitFor(t, "goroutines return to the baseline", func() bool { return runtime.NumGoroutine() <= base })

	failing := func() (*handle, error) { return nil, errors.New("no device") }
	if _, err := openShared(failing); err == nil {
		t.Fatal("openShared hid the open error")
	}
}

func TestBindErrors(t *testing.T) {
	h, _, fake := newFake(t)
	d := attach(h)
	defer d.Close()

	fake.bindErr = unix.EINVAL
	_, err := d.BindInterdomain(4, 20)
	if !errors.Is(err, ErrNotBindable) || !errors.Is(err, unix.EINVAL) {
		t.Errorf("BindInterdomain EINVAL = %v, want ErrNotBindable wrapping EINVAL", err)
	}
	if want := "bind to port 20 of domain 4"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%v does not contain %q", err, want)
	}
	fake.bindErr = unix.ESRCH
	if _, err := d.BindInterdomain(4, 20); !errors.Is(err, ErrNotBindable) {
		t.Errorf("BindInterdomain ESRCH = %v, want ErrNotBindable", err)
	}
	fake.bindErr = unix.ENOSPC
	_, err = d.BindUnbound(4)
	if errors.Is(err, ErrNotBindable) || !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "max_event_channels") {
		t.Errorf("BindUnbound ENOSPC = %v, want ENOSPC with the max_event_channels hint", err)
	}
	h.mu.Lock()
	n := len(h.ports)
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("%d ports registered after failed binds", n)
	}
}

func TestNotifyError(t *testing.T) {
	h, _, fake := newFake(t)
	d := attach(h)
	defer d.Close()
	c, err := d.BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fake.mu.Lock()
	fake.notifyErr = unix.ENOTCONN
	fake.mu.Unlock()
	err = c.Notify()
	if !errors.Is(err, unix.ENOTCONN) || !strings.Contains(err.Error(), "not bound through this process's /dev/xen/evtchn handle") {
		t.Errorf("Notify ENOTCONN = %v", err)
	}
}

func TestOpenErrorHints(t *testing.T) {
	for _, tc := range []struct {
		errno unix.Errno
		want  string
	}{
		{unix.ENOENT, "open /dev/xen/evtchn: no such file or directory: not running under Xen, " +
			"or the xen-evtchn module is not loaded (try: modprobe xen-evtchn)"},
		{unix.EACCES, "open /dev/xen/evtchn: permission denied: run as root or give this user access to /dev/xen/evtchn"},
		{unix.EPERM, "run as root or give this user access to /dev/xen/evtchn"},
		{unix.ENODEV, "open /dev/xen/evtchn: no such device: the device node exists but no driver serves it: " +
			"the xen-evtchn module is not loaded, or this is not a Xen domain"},
		{unix.ENXIO, "try: modprobe xen-evtchn"},
		{unix.EIO, "open /dev/xen/evtchn: input/output error"},
	} {
		err := openError(tc.errno)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("openError(%v) = %q, want it to contain %q", tc.errno, err, tc.want)
		}
		if !errors.Is(err, tc.errno) {
			t.Errorf("openError(%v) does not wrap the errno", tc.errno)
		}
	}
}

func TestOpenOnThisMachine(t *testing.T) {
	if _, err := os.Stat(devPath); err == nil {
		t.Skipf("%s exists: this machine runs under Xen, so the missing-device error cannot be checked", devPath)
	}
	d, err := Open()
	if err == nil {
		d.Close()
		t.Fatalf("Open succeeded though %s does not exist", devPath)
	}
	if !strings.Contains(err.Error(), "modprobe xen-evtchn") {
		t.Errorf("Open: %q, want the modprobe hint", err)
	}
	t.Log(err)
}

func TestBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{1: time.Millisecond, 2: 2 * time.Millisecond, 8: maxBackoff, 100: maxBackoff} {
		if got := backoff(failures); got != want {
			t.Errorf("backoff(%d) = %v, want %v", failures, got, want)
		}
	}
}

// TestRealDevice binds a port to this domain itself and wakes it, when
// /dev/xen/evtchn exists.
func TestRealDevice(t *testing.T) {
	if _, err := os.Stat(devPath); err != nil {
		t.Skipf("needs Xen: %s is missing (%v)", devPath, err)
	}
	self := os.Getenv("VCHAN_TEST_DOMID")
	if self == "" {
		t.Skip("needs VCHAN_TEST_DOMID, this domain's id, to bind a channel to itself")
	}
	var domid uint16
	if _, err := fmt.Sscan(self, &domid); err != nil {
		t.Fatalf("VCHAN_TEST_DOMID=%q: %v", self, err)
	}
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := d.BindUnbound(domid)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := d.BindInterdomain(domid, a.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for range 3 {
		if err := a.Notify(); err != nil {
			t.Fatal(err)
		}
		expectEvent(t, b)
		if err := b.Notify(); err != nil {
			t.Fatal(err)
		}
		expectEvent(t, a)
	}
}
