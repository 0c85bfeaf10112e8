package evtsim

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
)

// pending reports whether an event is pending on c, consuming it: a Wait
// whose deadline has passed returns nil only for a pending event (nothing
// interrupts in these tests).
func pending(c evtchn.Channel) bool {
	return c.Wait(aLongTimeAgo) == nil
}

var aLongTimeAgo = time.Unix(1, 0)

// pair binds a connected channel pair: a in domain da (the BindUnbound side),
// b in domain db.
func pair(t *testing.T, s *Switch, da, db uint16) (a, b evtchn.Channel) {
	t.Helper()
	a, err := s.Open(da).BindUnbound(db)
	if err != nil {
		t.Fatalf("BindUnbound: %v", err)
	}
	b, err = s.Open(db).BindInterdomain(da, a.LocalPort())
	if err != nil {
		t.Fatalf("BindInterdomain: %v", err)
	}
	return a, b
}

func TestNotifyBothWays(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 5)
	if pending(a) || pending(b) {
		t.Fatal("event pending right after bind")
	}
	if err := a.Notify(); err != nil {
		t.Fatal(err)
	}
	if pending(a) {
		t.Error("notify raised an event on the sender")
	}
	if !pending(b) {
		t.Error("notify from a did not reach b")
	}
	if err := b.Notify(); err != nil {
		t.Fatal(err)
	}
	if !pending(a) {
		t.Error("notify from b did not reach a")
	}
	if pending(b) {
		t.Error("event pending on b after it was received")
	}
}

func TestEventsCoalesce(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 1, 2)
	for range 10 {
		if err := a.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	if !pending(b) {
		t.Fatal("no event pending")
	}
	if pending(b) {
		t.Fatal("ten notifies gave more than one pending event")
	}
}

func TestPortNumbers(t *testing.T) {
	s := NewSwitch()
	dv := s.Open(3)
	seen := map[evtchn.Port]bool{}
	var last evtchn.Port
	for i := range 20 {
		c, err := dv.BindUnbound(4)
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalPort()
		if p == 0 {
			t.Fatal("port 0 handed out")
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		if i > 0 && p <= last {
			t.Errorf("port %d after %d: not increasing", p, last)
		}
		seen[p], last = true, p
		if i%2 == 0 {
			c.Close()
		}
	}
	if got := s.Ports(3); got != 10 {
		t.Errorf("Ports = %d, want 10", got)
	}
}

func TestPortsAreLocalToDomain(t *testing.T) {
	s := NewSwitch()
	a, err := s.Open(1).BindUnbound(2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(2).BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	if a.LocalPort() != 1 || b.LocalPort() != 1 {
		t.Errorf("first ports = %d, %d; want 1 in each domain", a.LocalPort(), b.LocalPort())
	}
}

func TestBindInterdomainErrors(t *testing.T) {
	s := NewSwitch()
	offered, err := s.Open(0).BindUnbound(7)
	if err != nil {
		t.Fatal(err)
	}
	connected, _ := pair(t, s, 0, 7)

	cases := []struct {
		name   string
		dom    uint16
		remote uint16
		port   evtchn.Port
		want   string
	}{
		{"no such port", 7, 0, 999, "no such port"},
		{"no such domain", 7, 42, 1, "no such port"},
		{"offered to someone else", 8, 0, offered.LocalPort(), "offered to domain 7"},
		{"already connected", 7, 0, connected.LocalPort(), "already connected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.Open(tc.dom).BindInterdomain(tc.remote, tc.port)
			if err == nil {
				c.Close()
				t.Fatal("bind succeeded")
			}
			if !errors.Is(err, evtchn.ErrNotBindable) {
				t.Errorf("error %v does not wrap ErrNotBindable", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	if got := s.Ports(8); got != 0 {
		t.Errorf("failed bind left %d ports in domain 8", got)
	}
}

func TestSelfBind(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 9, 9)
	if a.LocalPort() == b.LocalPort() {
		t.Fatal("both ends got the same port")
	}
	if err := a.Notify(); err != nil {
		t.Fatal(err)
	}
	if !pending(b) || pending(a) {
		t.Error("self-bound notify went to the wrong end")
	}
	if got := s.Ports(9); got != 2 {
		t.Errorf("Ports = %d, want 2", got)
	}
}

func TestNotifyUnconnectedIsDropped(t *testing.T) {
	s := NewSwitch()
	a, err := s.Open(0).BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Notify(); err != nil {
		t.Errorf("notify on unbound port: %v", err)
	}
	// The event must not be remembered for a later peer.
	b, err := s.Open(1).BindInterdomain(0, a.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	if pending(b) {
		t.Error("event sent before bind was delivered after it")
	}
}

func TestCloseUnbindsPeer(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Notify(); err != nil {
		t.Errorf("notify to closed peer: %v, want nil (dropped)", err)
	}
	if pending(b) {
		t.Error("closed channel received an event")
	}
	if err := b.Notify(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("notify on closed channel: %v, want ErrClosed", err)
	}
	if err := b.Close(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("second close: %v, want ErrClosed", err)
	}
	if s.Ports(1) != 0 || s.Ports(0) != 1 {
		t.Errorf("Ports = %d, %d; want 1, 0", s.Ports(0), s.Ports(1))
	}
	// As in Xen, a's port is unbound again and offered to domain 1.
	c, err := s.Open(1).BindInterdomain(0, a.LocalPort())
	if err != nil {
		t.Fatalf("rebinding to the port left unbound: %v", err)
	}
	if err := c.Notify(); err != nil {
		t.Fatal(err)
	}
	if !pending(a) {
		t.Error("rebound channel does not deliver")
	}
	a.Close()
	c.Close()
	if s.Ports(0) != 0 || s.Ports(1) != 0 {
		t.Errorf("ports leaked: %d, %d", s.Ports(0), s.Ports(1))
	}
}

func TestDeviceClose(t *testing.T) {
	s := NewSwitch()
	dv := s.Open(0)
	c, err := dv.BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := dv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := dv.BindUnbound(1); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("bind after device close: %v, want ErrClosed", err)
	}
	if _, err := dv.BindInterdomain(1, 1); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("bind after device close: %v, want ErrClosed", err)
	}
	if err := dv.Close(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("second device close: %v, want ErrClosed", err)
	}
	// The channel bound before stays usable.
	peer, err := s.Open(1).BindInterdomain(0, c.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.Notify(); err != nil {
		t.Fatal(err)
	}
	if !pending(c) {
		t.Error("channel of closed device stopped receiving")
	}
}

// A held port outlives its Channel, as an unmap notification keeps a Linux
// user event channel bound after the process closed it.
func TestHoldKeepsPortBound(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	h, err := s.Hold(1, b.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Notify(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("notify on closed channel: %v, want ErrClosed", err)
	}
	if got := s.Ports(1); got != 1 {
		t.Errorf("held port unbound early: Ports = %d", got)
	}
	if err := h.Notify(); err != nil {
		t.Fatal(err)
	}
	if !pending(a) {
		t.Error("notify through hold did not reach the peer")
	}
	h.Release()
	h.Release() // no-op
	if got := s.Ports(1); got != 0 {
		t.Errorf("Ports = %d after release, want 0", got)
	}
	if err := h.Notify(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("notify after release: %v, want ErrClosed", err)
	}
	// The peer's port is unbound now: its notifies are dropped.
	if err := a.Notify(); err != nil {
		t.Error(err)
	}
	if _, err := s.Hold(1, b.LocalPort()); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("hold of unbound port: %v, want ErrClosed", err)
	}
}

func TestHoldWithoutClose(t *testing.T) {
	s := NewSwitch()
	a, _ := pair(t, s, 0, 1)
	h, err := s.Hold(0, a.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	h.Release()
	if got := s.Ports(0); got != 1 {
		t.Errorf("release unbound an open channel: Ports = %d", got)
	}
	if err := a.Notify(); err != nil {
		t.Error(err)
	}
}

func TestCloseDomain(t *testing.T) {
	s := NewSwitch()
	dv := s.Open(3)
	a, b := pair(t, s, 2, 3)
	h, err := s.Hold(3, b.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	s.CloseDomain(3)
	if got := s.Ports(3); got != 0 {
		t.Errorf("dead domain has %d ports", got)
	}
	if err := a.Notify(); err != nil {
		t.Errorf("notify to dead peer: %v, want nil", err)
	}
	// The survivor's Wait reports the peer gone, as the real device's
	// status check does, until its port is connected again.
	if err := a.Wait(time.Time{}); !errors.Is(err, evtchn.ErrPeerGone) {
		t.Errorf("Wait of the dead domain's peer = %v, want ErrPeerGone", err)
	}
	if err := b.Notify(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("notify from dead domain: %v, want ErrClosed", err)
	}
	if err := h.Notify(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("notify through hold of dead domain: %v, want ErrClosed", err)
	}
	if _, err := dv.BindUnbound(2); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("bind through dead domain's device: %v, want ErrClosed", err)
	}
	// A new domain with the same id starts afresh and may bind to the
	// port its predecessor left unbound.
	c, err := s.Open(3).BindInterdomain(2, a.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalPort() != b.LocalPort() {
		t.Fatalf("new domain got port %d, want the reused number %d", c.LocalPort(), b.LocalPort())
	}
	// The stale hold must not touch the new domain's port, even if it has
	// the same number.
	h.Release()
	if got := s.Ports(3); got != 1 {
		t.Errorf("stale release changed the new domain: Ports = %d", got)
	}
	if err := b.Close(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("close of dead domain's channel: %v, want ErrClosed", err)
	}
	if err := c.Notify(); err != nil {
		t.Fatal(err)
	}
	if !pending(a) {
		t.Error("new domain's channel does not deliver")
	}
	s.CloseDomain(99) // unknown: no-op
}

func TestNotifyDoesNotAllocate(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	delivered := true
	allocs := testing.AllocsPerRun(1000, func() {
		if err := a.Notify(); err != nil {
			panic(err)
		}
		if b.Wait(time.Now().Add(time.Minute)) != nil {
			delivered = false
		}
	})
	if !delivered {
		t.Error("an event was not delivered")
	}
	if allocs != 0 {
		t.Errorf("Notify + Wait allocates %v times, want 0", allocs)
	}
}

func TestConcurrent(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	const n = 1000
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(3)
	go func() {
		defer wg.Done()
		for range n {
			a.Notify()
		}
	}()
	go func() {
		defer wg.Done()
		for range n {
			b.Notify()
		}
	}()
	go func() {
		defer wg.Done()
		for !isClosed(done) {
			a.Wait(aLongTimeAgo)
			b.Wait(aLongTimeAgo)
			runtime.Gosched() // let the notifiers run with GOMAXPROCS=1
		}
	}()
	// Binds and closes in other domains race with the notifies.
	for i := range 100 {
		c, d := pair(t, s, uint16(10+i%3), uint16(20+i%5))
		c.Notify()
		d.Close()
		c.Close()
	}
	close(done)
	wg.Wait()
	for dom := uint16(10); dom < 25; dom++ {
		if got := s.Ports(dom); got != 0 {
			t.Errorf("domain %d leaked %d ports", dom, got)
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestWaitDeadlineAndInterrupt(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	start := time.Now()
	if err := b.Wait(start.Add(20 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait with nothing pending = %v, want os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("Wait returned after %v, before its deadline", d)
	}
	b.Interrupt() // before the Wait: the next one returns at once
	if err := b.Wait(time.Time{}); err != nil {
		t.Fatalf("Wait after Interrupt = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Wait(time.Time{}) }()
	a.Notify()
	if err := <-done; err != nil {
		t.Fatalf("Wait woken by Notify = %v", err)
	}
	go func() { done <- b.Wait(time.Time{}) }()
	b.Interrupt()
	if err := <-done; err != nil {
		t.Fatalf("Wait woken by Interrupt = %v", err)
	}
	if pending(b) {
		t.Error("an event is pending after every one was consumed")
	}
}

func TestWaitFailsWhenClosedOrDead(t *testing.T) {
	s := NewSwitch()
	_, b := pair(t, s, 0, 1)
	done := make(chan error, 1)
	go func() { done <- b.Wait(time.Time{}) }()
	s.CloseDomain(1)
	if err := <-done; !errors.Is(err, evtchn.ErrClosed) {
		t.Fatalf("Wait when its domain died = %v, want ErrClosed", err)
	}
	c, _ := pair(t, s, 0, 2)
	c.Close()
	if err := c.Wait(time.Time{}); !errors.Is(err, evtchn.ErrClosed) {
		t.Fatalf("Wait after Close = %v, want ErrClosed", err)
	}
}

func TestConcurrentWaitFails(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	first := make(chan error, 1)
	go func() { first <- b.Wait(time.Time{}) }()
	// Wait until the first Wait holds the port (its flag is set on entry),
	// yielding so that it runs even with GOMAXPROCS=1.
	for !b.(*port).waiting.Load() {
		runtime.Gosched()
	}
	if err := b.Wait(time.Now().Add(time.Minute)); !errors.Is(err, ErrConcurrentWait) {
		t.Fatalf("a second, concurrent Wait = %v, want ErrConcurrentWait", err)
	}
	a.Notify()
	if err := <-first; err != nil {
		t.Fatalf("the first Wait = %v", err)
	}
}

func TestWaitWithDeadlineDoesNotAllocate(t *testing.T) {
	s := NewSwitch()
	a, b := pair(t, s, 0, 1)
	b.Wait(aLongTimeAgo) // nothing pending
	allocs := testing.AllocsPerRun(100, func() {
		a.Notify()
		if err := b.Wait(time.Now().Add(time.Minute)); err != nil {
			panic(err)
		}
		if err := b.Wait(time.Now().Add(time.Microsecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Wait allocates %v times, want 0", allocs)
	}
}

func TestForward(t *testing.T) {
	sw := NewSwitch()
	a, err := sw.Open(0).BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sw.Open(1).BindInterdomain(0, a.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	var rung int
	if err := Forward(b, func() { rung++ }); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := a.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Notify(); err != nil { // to a, which forwards nothing
		t.Fatal(err)
	}
	if rung != 3 {
		t.Errorf("forwarded %d events, want 3 (each, even while one is pending)", rung)
	}
	if err := b.Wait(time.Now()); err != nil {
		t.Errorf("the forwarded events are not pending too: %v", err)
	}
	if err := Forward(b, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Notify(); err != nil {
		t.Fatal(err)
	}
	if rung != 3 {
		t.Errorf("an event was forwarded after Forward(nil)")
	}
	if err := Forward(otherChannel{}, func() {}); err == nil {
		t.Error("Forward accepted a channel of another implementation")
	}
}

// otherChannel is an evtchn.Channel that is not the Switch's.
type otherChannel struct{ evtchn.Channel }
