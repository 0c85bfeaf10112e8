package vchan

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
)

// spinConn is the part of a Conn that spin uses.
func spinConn(wait time.Duration) *Conn {
	c := &Conn{closed: make(chan struct{}), rdl: makeDeadline()}
	c.SetSpinWait(wait)
	return c
}

func TestSpinFindsProgress(t *testing.T) {
	c := spinConn(time.Second)
	calls := 0
	ready := func() (int, error) {
		calls++
		if calls == 1000 {
			return 1, nil
		}
		return 0, nil
	}
	if !c.spin(ready, &c.rdl) {
		t.Fatalf("spin gave up after %d polls; progress came at poll 1000 of %d", calls, spinPolls(time.Second))
	}
	if calls != 1000 {
		t.Fatalf("spin polled %d times, want it to stop at the poll that found progress (1000)", calls)
	}
}

func TestSpinIsBoundedByPolls(t *testing.T) {
	d := 50 * time.Microsecond
	c := spinConn(d)
	calls := 0
	never := func() (int, error) { calls++; return 0, nil }
	if c.spin(never, &c.rdl) {
		t.Fatal("spin reported progress that never came")
	}
	if want := spinPolls(d); int64(calls) != want {
		t.Fatalf("spin polled %d times, want spinPolls(%v) = %d", calls, d, want)
	}
	c.SetSpinWait(0)
	calls = 0
	if c.spin(never, &c.rdl) || calls != 0 {
		t.Fatalf("spinning off: spin polled %d times", calls)
	}
}

func TestSpinPollsScaleWithTheWait(t *testing.T) {
	one, two := spinPolls(time.Millisecond), spinPolls(2*time.Millisecond)
	if one < 1 || two != 2*one {
		t.Fatalf("spinPolls(1ms) = %d, spinPolls(2ms) = %d: want a positive count that doubles", one, two)
	}
	if n := spinPolls(time.Nanosecond); n < 1 {
		t.Fatalf("spinPolls(1ns) = %d, want at least one poll", n)
	}
	hour := spinPolls(time.Hour)
	for _, d := range []time.Duration{24 * time.Hour, 1<<63 - 1} {
		if n := spinPolls(d); n != hour {
			t.Errorf("spinPolls(%v) = %d, want the one-hour count %d (no overflow)", d, n, hour)
		}
	}
}

// With one P the spin yields every 50 µs of polling where a yield is
// cheap, and no more often than keeps yields at a tenth of the spin where
// one is dear (a Xen PV guest), but at least every 10 ms.
func TestSpinYieldSpacing(t *testing.T) {
	floor, ceiling := spinPolls(spinYieldEvery), spinPolls(spinYieldMax)
	saved := yieldPolls.Load()
	defer yieldPolls.Store(saved)
	t.Logf("a yield costs about %v here; yield every %d polls (%d polls per ms)", timeYield(), spinYieldPolls(), pollsPerMs.Load())
	for _, tc := range []struct{ measured, want int64 }{
		{0, floor},
		{floor / 2, floor},
		{(floor + ceiling) / 2, (floor + ceiling) / 2},
		{ceiling * 3, ceiling},
	} {
		yieldPolls.Store(tc.measured)
		if got := spinYieldPolls(); got != tc.want {
			t.Errorf("yields measured to take %d polls: spinYieldPolls() = %d, want %d (floor %d, ceiling %d)", tc.measured, got, tc.want, floor, ceiling)
		}
	}
}

// A spin wait longer than any test must still end at once when the
// connection closes or the deadline passes.
func TestSpinEndsAtCloseAndDeadline(t *testing.T) {
	never := func() (int, error) { return 0, nil }
	for _, end := range []string{"close", "deadline"} {
		c := spinConn(time.Hour)
		done := make(chan bool)
		go func() { done <- c.spin(never, &c.rdl) }()
		if end == "close" {
			close(c.closed)
		} else {
			c.rdl.set(time.Now())
		}
		select {
		case stopped := <-done:
			if !stopped {
				t.Errorf("%s: spin reported no progress; want true, so that the caller looks", end)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: spin with a one-hour wait still polling a minute later", end)
		}
		c.rdl.stop()
	}
}

// On a connection, a Read spinning with an hour-long spin wait returns at
// its deadline and at Close, not an hour later.
func TestLongSpinWaitKeepsDeadlineAndClose(t *testing.T) {
	_, srv, cli := connPair(t, 4096, 4096)
	cli.SetSpinWait(time.Hour)
	cli.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() { _, err := cli.Read(make([]byte, 1)); done <- err }()
	if err := waitErr(t, done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	cli.SetReadDeadline(time.Time{})
	go func() { _, err := cli.Read(make([]byte, 1)); done <- err }()
	time.Sleep(10 * time.Millisecond) // let the Read start spinning (if it has not, Close is seen first: same result)
	cli.Close()
	if err := waitErr(t, done); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read during Close = %v, want net.ErrClosed", err)
	}
	_ = srv
}

// An idle reader blocked in Read beside a blocked writer is woken with the
// writer's events (whoever waits on the event channel hands them on), and
// must then wait again without spinning. With an hour-long spin wait, a
// reader that spun on such a wake-up would still be spinning when the
// transfer ends; the test looks at its stack.
func TestIdleReaderDoesNotSpinOnHandedOnWakeups(t *testing.T) {
	_, srv, cli := connPair(t, 4096, 4096)
	cli.SetSpinWait(0)
	srv.SetSpinWait(0)
	readDone := make(chan error, 1)
	go func() { _, err := srv.Read(make([]byte, 1)); readDone <- err }()
	testutil.WaitForStack(t, "(*Conn).Read(", "(*Conn).wait(")
	written := make(chan error, 1)
	go func() { _, err := srv.Write(make([]byte, 1<<20)); written <- err }()
	testutil.WaitForStack(t, "(*Conn).Write(", "(*Conn).wait(") // the ring is full: both wait
	srv.SetSpinWait(time.Hour)
	if _, err := io.CopyN(io.Discard, cli, 1<<20); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if err := waitErr(t, written); err != nil {
		t.Fatalf("Write: %v", err)
	}
	spinning := testutil.GoroutinesWith("(*Conn).spin(")
	srv.Close()
	if err := waitErr(t, readDone); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("idle Read at Close = %v, want net.ErrClosed", err)
	}
	if len(spinning) > 0 {
		t.Fatalf("after the transfer the idle reader is spinning:\n%s", spinning[0])
	}
}

// waitErr waits for an operation that should end at once.
func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("still blocked a minute later")
		return nil
	}
}

// A Read spinning with an hour-long spin wait returns io.EOF as soon as the
// peer closes: the spin watches the peer's live byte (the lab's kill -9 of
// a peer clears it; nothing else may come).
func TestLongSpinWaitSeesPeerClose(t *testing.T) {
	_, srv, cli := connPair(t, 4096, 4096)
	cli.SetSpinWait(time.Hour)
	done := make(chan error, 1)
	go func() { _, err := cli.Read(make([]byte, 1)); done <- err }()
	testutil.WaitForStack(t, "(*Conn).Read(", "(*Conn).spin(")
	srv.Close()
	if err := waitErr(t, done); err != io.EOF {
		t.Fatalf("Read when the peer closed = %v, want io.EOF", err)
	}
}
