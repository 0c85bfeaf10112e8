package vchan

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/vchan-go/vchan/internal/evtchn"
)

// The Conn waits on /dev/xen/evtchn and on vchan-simd channels through
// evtchn.Waiter, and on the in-process simulator's through Events. These
// tests run the Waiter path in process: a Host whose channels are Waiters
// built on the simulator's channels, which also check that at most one
// goroutine is in Wait at a time.

// waitCheck records the most goroutines seen in one channel's Wait at
// once.
type waitCheck struct {
	most atomic.Int32
}

func (w *waitCheck) saw(n int32) {
	for {
		most := w.most.Load()
		if n <= most || w.most.CompareAndSwap(most, n) {
			return
		}
	}
}

// waiterDomain returns a Host for simulated domain domid whose event
// channels are evtchn.Waiters.
func waiterDomain(sim *Simulator, domid uint16, check *waitCheck) *Host {
	h := hookedDomain(sim, domid, nil, nil)
	h.name = fmt.Sprintf("simulated dom%d with Waiter channels", domid)
	h.openEvtchn = func() (evtchn.Device, error) {
		return waiterDevice{sim.events.Open(domid), check}, nil
	}
	return h
}

type waiterDevice struct {
	evtchn.Device
	check *waitCheck
}

func (d waiterDevice) BindUnbound(remote uint16) (evtchn.Channel, error) {
	return d.wrap(d.Device.BindUnbound(remote))
}

func (d waiterDevice) BindInterdomain(remote uint16, port evtchn.Port) (evtchn.Channel, error) {
	return d.wrap(d.Device.BindInterdomain(remote, port))
}

func (d waiterDevice) wrap(ch evtchn.Channel, err error) (evtchn.Channel, error) {
	if err != nil {
		return nil, err
	}
	return &waiterChannel{Channel: ch, check: d.check, interrupt: make(chan struct{}, 1)}, nil
}

// waiterChannel is an evtchn.Waiter over a channel with Events.
type waiterChannel struct {
	evtchn.Channel
	check     *waitCheck
	in        atomic.Int32  // goroutines in Wait
	interrupt chan struct{} // one pending Interrupt
}

func (c *waiterChannel) Events() <-chan struct{} { return nil }

func (c *waiterChannel) Wait(deadline time.Time) error {
	c.check.saw(c.in.Add(1))
	defer c.in.Add(-1)
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-c.Channel.Events():
		return nil
	case <-c.interrupt:
		return nil
	case <-expired:
		return os.ErrDeadlineExceeded
	}
}

func (c *waiterChannel) Interrupt() {
	select {
	case c.interrupt <- struct{}{}:
	default:
	}
}

// waiterPair connects a dom0 server to a dom1 client whose channels are
// Waiters, with rings of size bytes (0: in the shared page).
func waiterPair(t testing.TB, size int, check *waitCheck) (srv, cli *Conn) {
	t.Helper()
	sim := NewSimulator()
	ln, err := Listen(1, "waiter", &Config{Host: waiterDomain(sim, 0, check), ReadBufferSize: size, WriteBufferSize: size})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	dialed := make(chan error, 1)
	go func() {
		var err error
		cli, err = Dial(0, "waiter", &Config{Host: waiterDomain(sim, 1, check)})
		dialed <- err
	}()
	srv, err = ln.AcceptVchan()
	if derr := <-dialed; derr != nil || err != nil {
		t.Fatalf("dial: %v; accept: %v", derr, err)
	}
	if srv.waiter == nil || cli.waiter == nil {
		t.Fatal("the Conns do not wait through evtchn.Waiter")
	}
	return srv, cli
}

// TestWaiterConformance: nettest's net.Conn conformance (deadlines changed
// while blocked, Close while blocked, concurrent Read and Write) with the
// Conn polling Waiter channels.
func TestWaiterConformance(t *testing.T) {
	for _, size := range []int{0, 65536} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var check waitCheck
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				srv, cli := waiterPair(t, size, &check)
				return srv, cli, func() { srv.Close(); cli.Close() }, nil
			})
			if most := check.most.Load(); most > 1 {
				t.Errorf("%d goroutines were in one channel's Wait at once, want at most 1", most)
			}
		})
	}
}

// TestWaiterBothDirections: a Read and a Write blocked on one Conn at once
// (its read ring empty, its write ring full); one of them polls the
// channel, and the event that frees the other must reach it.
func TestWaiterBothDirections(t *testing.T) {
	var check waitCheck
	srv, cli := waiterPair(t, 4096, &check)
	defer srv.Close()
	defer cli.Close()
	for round := range 20 {
		msg := bytes.Repeat([]byte{byte(round)}, 3*4096) // more than the ring holds
		wrote := make(chan error, 1)
		go func() {
			_, err := srv.Write(msg)
			wrote <- err
		}()
		read := make(chan error, 1)
		reply := make([]byte, 5)
		go func() {
			_, err := io.ReadFull(srv, reply)
			read <- err
		}()
		time.Sleep(time.Millisecond) // let both block, in either order
		got := make([]byte, len(msg))
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: the client read %v (equal %t)", round, err, bytes.Equal(got, msg))
		}
		if err := <-wrote; err != nil {
			t.Fatalf("round %d: blocked Write: %v", round, err)
		}
		if _, err := cli.Write([]byte("reply")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-read:
			if err != nil || string(reply) != "reply" {
				t.Fatalf("round %d: blocked Read = %q, %v", round, reply, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the blocked Read missed its event", round)
		}
	}
	if most := check.most.Load(); most > 1 {
		t.Errorf("%d goroutines were in one channel's Wait at once, want at most 1", most)
	}
}
