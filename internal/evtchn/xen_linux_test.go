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

	"github.com/vchan-go/vchan/internal/testutil/pollcheck"
	"github.com/vchan-go/vchan/internal/xendev"
)

// There is no Xen here. Each handle the channels open is one end of a
// socketpair standing in for the device descriptor: the test writes
// pending ports into the other end as the driver's read would return them,
// and reads the channel's unmask writes from it. A fake answers the ioctls.

const waitLimit = 5 * time.Second

// fakeDev opens socketpairs as handles, answers the event channel ioctls,
// and can make reads fail with EFBIG, as the driver does after its ring
// overflowed.
type fakeDev struct {
	t         *testing.T
	mu        sync.Mutex
	next      int
	calls     []string
	bindErr   error
	notifyErr error
	peers     map[int]int  // handle → the test's end
	opened    []int        // the test's ends of every handle opened
	efbig     atomic.Int32 // reads left to fail with EFBIG
	reads     atomic.Int32 // reads made, failed ones included
	// What EVTCHNOP_status answers: 0 interdomain, 1 unbound, 2 refused.
	status  atomic.Int32
	queries atomic.Int32
}

func newFake(t *testing.T) (*fakeDev, Device) {
	f := &fakeDev{t: t, next: 10, peers: make(map[int]int)}
	d, err := openWith(f.sys())
	if err != nil {
		t.Fatal(err)
	}
	return f, d
}

func (f *fakeDev) sys() sysCalls {
	return sysCalls{open: f.open, ioctl: f.ioctl, quickIoctl: f.ioctl, read: f.read, portStatus: f.portStatus}
}

func (f *fakeDev) portStatus(Port) (bool, error) {
	f.queries.Add(1)
	switch f.status.Load() {
	case 0:
		return true, nil
	case 1:
		return false, nil
	}
	return false, fmt.Errorf("%w: refused", errStatusUnavailable)
}

func (f *fakeDev) open() (int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	f.t.Cleanup(func() { unix.Close(fds[1]) })
	f.mu.Lock()
	f.peers[fds[0]] = fds[1]
	f.opened = append(f.opened, fds[1])
	f.mu.Unlock()
	return fds[0], nil
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
	f.reads.Add(1)
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

// peer returns the test's end of c's handle.
func (f *fakeDev) peer(c Channel) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers[c.(*channel).fd]
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

// unmasked reads the next unmask write of the channel.
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
	b := make([]byte, 4096)
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
	if err := c.Wait(time.Now().Add(waitLimit)); err != nil {
		t.Fatalf("port %d: no event within %v: %v", c.LocalPort(), waitLimit, err)
	}
}

func expectNoEvent(t *testing.T, c Channel) {
	t.Helper()
	if err := c.Wait(time.Now().Add(50 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("port %d: Wait = %v, want no event (os.ErrDeadlineExceeded)", c.LocalPort(), err)
	}
}

// waitParked waits until a goroutine is parked in the runtime poller inside
// Wait.
func waitParked(t *testing.T) {
	t.Helper()
	waitForGoroutine(t, "Wait did not park in the runtime poller", "(*channel).Wait", "runtime_pollWait")
}

// waitForGoroutine waits until some goroutine's stack holds both frames.
func waitForGoroutine(t *testing.T, failure, frame1, frame2 string) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, frame1) && strings.Contains(g, frame2) {
				return
			}
		}
		if time.Now().After(deadline) {
			var ours []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "evtchn.") && !strings.Contains(g, "waitForGoroutine") {
					ours = append(ours, g)
				}
			}
			t.Fatalf("%s; the package's goroutines:\n%s", failure, strings.Join(ours, "\n\n"))
		}
	}
}

func TestChannel(t *testing.T) {
	fake, d := newFake(t)
	c1, err := d.BindUnbound(5)
	if err != nil {
		t.Fatal(err)
	}
	if c1.LocalPort() != 10 || !fake.called("bind_unbound 5") {
		t.Fatalf("BindUnbound: port %d, calls %v", c1.LocalPort(), fake.calls)
	}
	p1 := fake.peer(c1)
	expectUnmasked(t, p1, 10) // the unmask after binding, as libxenvchan does
	c2, err := d.BindInterdomain(6, 77)
	if err != nil {
		t.Fatal(err)
	}
	if c2.LocalPort() != 11 || !fake.called("bind_interdomain 6 77") {
		t.Fatalf("BindInterdomain: port %d, calls %v", c2.LocalPort(), fake.calls)
	}
	p2 := fake.peer(c2)
	if p2 == p1 {
		t.Fatal("two channels share a handle")
	}
	expectUnmasked(t, p2, 11)

	// An event pending before Wait; one read per event, and the port is
	// written back to unmask it.
	send(t, p1, 10)
	reads := fake.reads.Load()
	expectEvent(t, c1)
	if got := fake.reads.Load() - reads; got != 1 {
		t.Errorf("%d reads for one pending event, want 1", got)
	}
	expectUnmasked(t, p1, 10)
	expectNoEvent(t, c1)
	expectNoEvent(t, c2)

	// An event while Wait is parked in the poller.
	done := make(chan error, 1)
	go func() { done <- c2.Wait(time.Time{}) }()
	waitParked(t)
	send(t, p2, 11)
	if err := <-done; err != nil {
		t.Fatalf("Wait = %v", err)
	}
	expectUnmasked(t, p2, 11)

	// Interrupt ends a parked Wait, and one made before Wait ends the next.
	expectInterruptEndsWait(t, c2, waitParked)
	c2.Interrupt()
	if err := c2.Wait(time.Now().Add(waitLimit)); err != nil {
		t.Fatalf("Wait after Interrupt = %v, want nil at once", err)
	}
	expectNoEvent(t, c2) // the interruption was used up

	if err := c1.Notify(); err != nil || !fake.called("notify 10") {
		t.Fatalf("Notify = %v, calls %v", err, fake.calls)
	}

	// Ring overflow: the read fails with EFBIG; the channel resets the
	// ring, unmasks its port and reports an event.
	fake.efbig.Store(1)
	send(t, p1, 10)
	expectEvent(t, c1)
	if !fake.called("reset") {
		t.Fatalf("no IOCTL_EVTCHN_RESET after EFBIG: calls %v", fake.calls)
	}
	expectUnmasked(t, p1, 10)

	// Close closes the handle, which unbinds the port; the test's end sees
	// the other end closed.
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Notify(); !errors.Is(err, ErrClosed) {
		t.Errorf("Notify after Close = %v, want ErrClosed", err)
	}
	if err := c2.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if err := unix.Sendto(p2, []byte{11, 0, 0, 0}, unix.MSG_NOSIGNAL, nil); err != unix.EPIPE {
		t.Errorf("write to the handle after Close = %v, want EPIPE (the descriptor leaked)", err)
	}

	// The Device goes; its channels stay usable.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.BindUnbound(5); !errors.Is(err, ErrClosed) {
		t.Errorf("BindUnbound after Close = %v, want ErrClosed", err)
	}
	if err := d.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Device Close = %v, want ErrClosed", err)
	}
	if err := c1.Notify(); err != nil {
		t.Errorf("Notify after the Device closed = %v", err)
	}
	c1.Close()
}

func TestUnmaskFailureIsSticky(t *testing.T) {
	fake, d := newFake(t)
	defer d.Close()
	c, err := d.BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := fake.peer(c)
	expectUnmasked(t, p, 10)
	send(t, p, 10)
	unix.Shutdown(p, unix.SHUT_RD) // the channel's unmask write fails (EPIPE)
	err = c.Wait(time.Now().Add(waitLimit))
	if !errors.Is(err, unix.EPIPE) || !strings.Contains(err.Error(), "unmask port 10") {
		t.Fatalf("Wait with a failing unmask = %v, want EPIPE", err)
	}
	if err2 := c.Wait(time.Now().Add(waitLimit)); !errors.Is(err2, unix.EPIPE) {
		t.Errorf("next Wait = %v, want the same failure", err2)
	}
	c.Interrupt()
	if err2 := c.Wait(time.Now().Add(waitLimit)); !errors.Is(err2, unix.EPIPE) {
		t.Errorf("Wait after Interrupt = %v, want the failure, not a wake-up", err2)
	}
}

func TestBindErrors(t *testing.T) {
	fake, d := newFake(t)
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
	// Every handle a failed bind opened is closed again.
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.opened) != 4 {
		t.Fatalf("%d handles opened for 3 binds and the Open, want 4", len(fake.opened))
	}
	for _, peer := range fake.opened {
		if err := unix.Sendto(peer, []byte{1, 0, 0, 0}, unix.MSG_NOSIGNAL, nil); err != unix.EPIPE {
			t.Errorf("write to the handle of a failed bind = %v, want EPIPE (the handle leaked)", err)
		}
	}
}

func TestNotifyError(t *testing.T) {
	fake, d := newFake(t)
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

// TestOpenErrorHints checks that a failed open names this device and its
// module; package xendev tests the hints for every errno.
func TestOpenErrorHints(t *testing.T) {
	want := "open /dev/xen/evtchn: no such file or directory: not running under Xen, " +
		"or the xen-evtchn module is not loaded (try: modprobe xen-evtchn)"
	if err := xendev.OpenError(evtchnDev, unix.ENOENT); err.Error() != want {
		t.Errorf("OpenError(ENOENT) = %q, want %q", err, want)
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

// expectInterruptEndsWait starts a Wait, lets blocked see it block, and
// checks that Interrupt ends it with nil.
func expectInterruptEndsWait(t *testing.T, c Channel, blocked func(*testing.T)) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait(time.Time{}) }()
	blocked(t)
	c.Interrupt()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("interrupted Wait = %v, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Interrupt did not end Wait")
	}
}

// waitInPpoll waits until a goroutine is blocked in Wait's first phase.
func waitInPpoll(t *testing.T) {
	t.Helper()
	waitForGoroutine(t, "Wait did not block in ppoll", "(*channel).waitBlocking", "Ppoll")
}

// TestBlockingPhase: within the window, Wait blocks in ppoll, and an event
// costs one read (no read that fails with EAGAIN first, as the runtime
// poller's path makes); Interrupt and the deadline end that phase too.
func TestBlockingPhase(t *testing.T) {
	// With one P there is no blocking phase (internal/blockwait).
	if prev := runtime.GOMAXPROCS(0); prev < 2 {
		runtime.GOMAXPROCS(2)
		defer runtime.GOMAXPROCS(prev)
	}
	defer func(w time.Duration) { blockingWindow = w }(blockingWindow)
	blockingWindow = time.Hour
	fake, d := newFake(t)
	c, err := d.BindUnbound(5)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := fake.peer(c)
	expectUnmasked(t, p, 10) // the unmask after binding

	done := make(chan error, 1)
	reads := fake.reads.Load()
	go func() { done <- c.Wait(time.Time{}) }()
	waitInPpoll(t)
	send(t, p, 10)
	if err := <-done; err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if got := fake.reads.Load() - reads; got != 1 {
		t.Errorf("%d reads for an event that came during ppoll, want 1", got)
	}
	expectUnmasked(t, p, 10)

	expectInterruptEndsWait(t, c, waitInPpoll)

	start := time.Now()
	if err := c.Wait(start.Add(20 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait past its deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > waitLimit {
		t.Fatalf("Wait with a 20 ms deadline returned after %v", waited)
	}
	expectNoEvent(t, c) // the Interrupt was used up, no event is pending
}

// TestPeerGone: a blocked Wait asks Xen every statusInterval whether the
// port is still connected. A connected port that becomes unbound (the peer's
// domain was destroyed) ends the Wait with ErrPeerGone; a port never
// connected yet (a server waiting for its client) does not, nor does a
// connected one: the Wait goes on; and where Xen cannot be asked, Wait stops
// asking and keeps waiting.
func TestPeerGone(t *testing.T) {
	defer func(w, i time.Duration) { blockingWindow, statusInterval = w, i }(blockingWindow, statusInterval)
	blockingWindow, statusInterval = time.Millisecond, 20*time.Millisecond
	fake, d := newFake(t)

	c, err := d.BindInterdomain(5, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		for {
			if err := c.Wait(time.Time{}); err != nil {
				done <- err
				return
			}
		}
	}()
	for fake.queries.Load() < 2 { // checked and still connected
		time.Sleep(time.Millisecond)
	}
	fake.status.Store(1) // the peer's domain is destroyed
	select {
	case err := <-done:
		if !errors.Is(err, ErrPeerGone) {
			t.Fatalf("Wait after the remote end went = %v, want ErrPeerGone", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Wait did not notice the remote end going")
	}

	// A server's port, not connected yet: unbound is its normal state, and
	// the Wait goes on until its deadline.
	srv, err := d.BindUnbound(5)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	q := fake.queries.Load()
	if err := srv.Wait(time.Now().Add(20 * statusInterval)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait on a port not yet connected = %v, want os.ErrDeadlineExceeded", err)
	}
	if got := fake.queries.Load() - q; got < 2 {
		t.Errorf("%d status queries in a Wait of %v, want one per %v", got, 20*statusInterval, statusInterval)
	}

	// Xen refuses: the channel stops asking and waits for its deadline.
	fake.status.Store(2)
	q = fake.queries.Load()
	for range 2 {
		if err := srv.Wait(time.Now().Add(200 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Wait when the query is refused = %v, want os.ErrDeadlineExceeded", err)
		}
	}
	if got := fake.queries.Load() - q; got != 1 {
		t.Errorf("%d queries after a refusal, want 1", got)
	}
}

// Notify runs for every event a connection sends: it must not allocate,
// on the real device as on the simulator (its ioctl argument lived on the
// stack and escaped through the indirect call: one allocation per event).
func TestNotifyDoesNotAllocate(t *testing.T) {
	f := &fakeDev{t: t, next: 10, peers: make(map[int]int)}
	sys := f.sys()
	var notified atomic.Int32
	var port atomic.Uint32
	sys.quickIoctl = func(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
		if req != ioctlNotify {
			return f.ioctl(fd, req, arg)
		}
		notified.Add(1)
		port.Store((*notifyArg)(arg).Port)
		return 0, nil
	}
	d, err := openWith(sys)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.BindUnbound(5)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.Notify(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Notify allocated %v times per call, want 0", allocs)
	}
	if notified.Load() == 0 || Port(port.Load()) != c.LocalPort() {
		t.Errorf("the notify ioctl ran %d times with port %d, want port %d", notified.Load(), port.Load(), c.LocalPort())
	}
}

// Wait takes an event without allocating, also when it waits in the
// runtime poller (after the blocking window, or without one): an idle
// connection's every wake-up goes that way.
func TestPollerWaitDoesNotAllocate(t *testing.T) {
	defer func(w time.Duration) { blockingWindow = w }(blockingWindow)
	blockingWindow = 0 // straight to the runtime poller
	f, d := newFake(t)
	c, err := d.BindUnbound(5)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const runs = 50
	peer := f.peer(c)
	for range runs + 1 { // AllocsPerRun runs its function once more
		send(t, peer, c.LocalPort())
	}
	before := f.reads.Load()
	allocs := testing.AllocsPerRun(runs, func() {
		if err := c.Wait(time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Wait in the poller allocated %v times per event, want 0", allocs)
	}
	if got := f.reads.Load() - before; got < runs+1 {
		t.Errorf("the %d Waits read the handle %d times: not every event was taken", runs+1, got)
	}
}

// TestStatusDeadlineKept: a Wait without a deadline of its own leaves the
// status check's deadline set for the Waits that follow, instead of setting
// it again each time (clock reads that are system calls under a Xen PV
// clock): in a steady stream of events the status check then still comes
// once per statusInterval. A Wait with a deadline of its own honours it,
// and the next one without replaces that deadline.
func TestStatusDeadlineKept(t *testing.T) {
	defer func(w, i time.Duration) { blockingWindow, statusInterval = w, i }(blockingWindow, statusInterval)
	blockingWindow, statusInterval = 0, 20*time.Millisecond // the poller
	f, c, peer := bindInterdomain(t)

	// A stream: an event is pending whenever Wait starts. Set again for
	// each Wait, the status deadline would never pass.
	waits, pending := 0, false
	var b [64]byte
	for start := time.Now(); f.queries.Load() < 3 && time.Since(start) < waitLimit; waits++ {
		if !pending {
			send(t, peer, c.LocalPort())
			pending = true
		}
		if err := c.Wait(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Read(peer, b[:]); err == nil {
			pending = false // taken and unmasked
		}
	}
	if q := f.queries.Load(); q < 3 || int(q) >= waits {
		t.Fatalf("%d status queries in %d Waits, each with an event pending: want one per %v", q, waits, statusInterval)
	}
	if pending {
		expectEvent(t, c)
		unmasked(t, peer)
	}

	// The caller's own deadline is kept, though a status check's is set.
	statusInterval = time.Hour // no status query from here on
	start := time.Now()
	if err := c.Wait(start.Add(20 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait with a deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	if waited := time.Since(start); waited < 20*time.Millisecond || waited > waitLimit {
		t.Fatalf("Wait with a 20 ms deadline returned after %v", waited)
	}
	// Without one again: the expired deadline is replaced, so the Wait ends
	// with the event, not at once with a status query.
	q := f.queries.Load()
	time.AfterFunc(10*time.Millisecond, func() {
		_ = unix.Sendto(peer, binary.NativeEndian.AppendUint32(nil, uint32(c.LocalPort())), unix.MSG_NOSIGNAL, nil)
	})
	if err := c.Wait(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if f.queries.Load() != q {
		t.Fatal("a Wait without a deadline ended at the expired deadline of the Wait before")
	}
	expectUnmasked(t, peer, c.LocalPort())
}

// TestHandleOutOfPoller: the handle stays out of the runtime poller, which
// every event would wake while Wait blocks in ppoll. Binding adds a gate
// (internal/blockwait), which watches the handle only while a Wait is in
// the poller (with more than one P; with one, every Wait is there).
func TestHandleOutOfPoller(t *testing.T) {
	before := pollcheck.Watches(t)
	_, c, peer := bindInterdomain(t)
	send(t, peer, c.LocalPort())
	expectEvent(t, c) // in ppoll, with more than one P
	unmasked(t, peer)
	pollcheck.CheckGates(t, "after a Wait", before, 1)

	defer func(w time.Duration) { blockingWindow = w }(blockingWindow)
	blockingWindow = 0 // straight to the runtime poller
	send(t, peer, c.LocalPort())
	expectEvent(t, c)
	unmasked(t, peer)
	pollcheck.CheckGates(t, "after a Wait in the poller", before, 1)
}

// bindInterdomain binds a channel on a fake device, closed at the test's
// end, and takes the unmask that follows binding; it returns the channel
// and the test's end of its handle, with the fake.
func bindInterdomain(t *testing.T) (*fakeDev, *channel, int) {
	t.Helper()
	f, d := newFake(t)
	c, err := d.BindInterdomain(5, 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer := f.peer(c)
	expectUnmasked(t, peer, c.LocalPort())
	return f, c.(*channel), peer
}
