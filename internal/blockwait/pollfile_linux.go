//go:build linux

package blockwait

import (
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A descriptor that the runtime poller watches wakes the poller on every
// event, whether or not a goroutine waits for it there: os.NewFile registers
// a non-blocking descriptor with epoll, edge-triggered, for as long as the
// file is open, and a process with an idle P keeps one thread blocked in
// epoll_pwait for its other descriptors (a socket, a timer). While a Waiter
// waits for an event channel in ppoll, each event then woke two threads: the
// one in ppoll, and the poller's, which found no goroutine to hand the event
// to and slept again. With both CPUs busy the second preempted one of them;
// on the simulator it halved the rate of transfers that sleep at every ring
// (docs/PERFORMANCE.md).
//
// So a descriptor that Waiters wait for stays out of the poller (Unpolled),
// and a Gate lets the poller see it only while a goroutine waits there.

// Unpolled wraps fd, a non-blocking descriptor, in an *os.File that the
// runtime poller does not watch: os.NewFile registers a descriptor only if
// it is non-blocking at the time, so fd is blocking for the call and
// non-blocking again after it. The file's RawConn serves Control; its Read,
// Write and deadlines do not wait. On error fd is closed.
//
// The blocking moment holds for every descriptor of fd's open file: use it
// only where nobody else reads or writes that file meanwhile in a way that
// could block (another process's read of an eventfd would).
func Unpolled(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.SetNonblock(fd, true); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Gate is an epoll instance of its own, in the runtime poller, that watches
// one descriptor (level-triggered) only between Open and Shut: the poller
// is woken by the descriptor's events only while a goroutine waits for them
// there. Opening and shutting cost a system call each and allocate nothing.
// In a process with one P, where every wait is in the poller and no thread
// waits in ppoll beside it, the gate stays open and costs nothing per wait.
//
// One goroutine at a time may call Open, Wait and Shut; SetDeadline may be
// called from any goroutine, to end a Wait early.
type Gate struct {
	fd     int      // the watched descriptor
	epoll  *os.File // the gate's epoll instance, in the runtime poller
	raw    syscall.RawConn
	always bool // open for good
	open   bool

	// The steps run through raw, with their inputs and results: method
	// values made once, so that no call allocates.
	ctlStep  func(epfd uintptr)
	ctlOp    int
	ctlEv    unix.EpollEvent
	ctlErr   error
	readStep func(epfd uintptr) bool
	take     func(fd uintptr) bool
}

// NewGate returns a gate for fd, open for good if the process has one P.
// The caller keeps fd open until Close.
func NewGate(fd int, name string) (*Gate, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	g := &Gate{fd: fd, epoll: os.NewFile(uintptr(epfd), name+" (poller gate)")}
	g.ctlStep, g.readStep = g.doCtl, g.doRead
	if g.raw, err = g.epoll.SyscallConn(); err != nil {
		g.epoll.Close()
		return nil, err
	}
	if runtime.GOMAXPROCS(0) == 1 {
		if err := g.Open(); err != nil {
			g.epoll.Close()
			return nil, err
		}
		g.always = true
	}
	return g, nil
}

// Open lets the poller see fd's events. An event already pending is seen.
func (g *Gate) Open() error {
	if g.open {
		return nil
	}
	if err := g.ctl(unix.EPOLL_CTL_ADD); err != nil {
		return err
	}
	g.open = true
	return nil
}

// Shut hides fd's events from the poller again, unless the gate is open for
// good.
func (g *Gate) Shut() {
	if !g.open || g.always {
		return
	}
	g.open = false
	_ = g.ctl(unix.EPOLL_CTL_DEL) // fails only if fd was closed, which removed it
}

func (g *Gate) ctl(op int) error {
	g.ctlOp, g.ctlEv = op, unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(g.fd)}
	if err := g.raw.Control(g.ctlStep); err != nil {
		return err
	}
	return g.ctlErr
}

func (g *Gate) doCtl(epfd uintptr) {
	g.ctlErr = unix.EpollCtl(int(epfd), g.ctlOp, g.fd, &g.ctlEv)
}

// Wait calls take until it reports true, waiting in the runtime poller,
// while the gate is open, for fd to be readable between calls; take is
// given fd. Wait returns os.ErrDeadlineExceeded once the deadline set by
// SetDeadline passes. take should be a value made once: Wait keeps it.
func (g *Gate) Wait(take func(fd uintptr) bool) error {
	g.take = take
	return g.raw.Read(g.readStep)
}

func (g *Gate) doRead(uintptr) bool { return g.take(uintptr(g.fd)) }

// SetDeadline sets the deadline of Wait; a past time ends a Wait at once.
func (g *Gate) SetDeadline(t time.Time) error { return g.epoll.SetReadDeadline(t) }

// Close releases the gate's epoll instance; fd stays open.
func (g *Gate) Close() error { return g.epoll.Close() }
