//go:build linux

package blockwait

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func newWaiter(t *testing.T) *Waiter {
	t.Helper()
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func expect(t *testing.T, what string, got Result, err error, want Result) {
	t.Helper()
	if err != nil || got != want {
		t.Fatalf("%s: Wait = %v, %v; want %v", what, got, err, want)
	}
}

func TestWait(t *testing.T) {
	r, wfd := pipe(t)
	w := newWaiter(t)

	res, err := w.Wait(r, time.Millisecond)
	expect(t, "nothing to read", res, err, Timeout)

	unix.Write(wfd, []byte{1})
	res, err = w.Wait(r, time.Hour)
	expect(t, "data waiting", res, err, Readable)

	r2, _ := pipe(t)
	w.Wake()
	res, err = w.Wait(r2, time.Hour)
	expect(t, "Wake before Wait", res, err, Woken)
	res, err = w.Wait(r2, time.Millisecond)
	expect(t, "after the Wake was reported", res, err, Timeout)

	done := make(chan Result, 1)
	go func() {
		res, _ := w.Wait(r2, time.Hour)
		done <- res
	}()
	time.Sleep(10 * time.Millisecond) // usually blocked in ppoll by now; either order must work
	w.Wake()
	select {
	case res := <-done:
		if res != Woken {
			t.Fatalf("Wake during Wait: %v, want Woken", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not end a blocked Wait")
	}

	w.Wake()
	w.Clear()
	res, err = w.Wait(r2, time.Millisecond)
	expect(t, "after Clear", res, err, Timeout)
}

// atLeastTwoPs runs the rest of the test with two Ps or more, where Acquire
// may grant blocking waits, whatever the machine.
func atLeastTwoPs(t *testing.T) {
	t.Helper()
	if prev := runtime.GOMAXPROCS(0); prev < 2 {
		runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

func TestAcquireBounded(t *testing.T) {
	atLeastTwoPs(t)
	n := 0
	for Acquire() {
		n++
		if n > 1000 {
			t.Fatal("Acquire never refuses")
		}
	}
	if int64(n) != limit {
		t.Errorf("Acquire granted %d, want the limit %d", n, limit)
	}
	for range n {
		Release()
	}
	if !Acquire() {
		t.Fatal("Acquire refused after every reservation was released")
	}
	Release()
}

// TestAcquireOneP: a process with one P gets no blocking wait, and a
// refusal there reserves nothing: with two Ps again, the whole share is
// granted.
func TestAcquireOneP(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	if Acquire() {
		Release()
		t.Fatal("Acquire granted a blocking wait with GOMAXPROCS=1")
	}
	runtime.GOMAXPROCS(2)
	n := 0
	for n <= int(limit) && Acquire() {
		n++
	}
	for range n {
		Release()
	}
	if int64(n) != limit {
		t.Errorf("with two Ps after refusals, Acquire granted %d, want the limit %d", n, limit)
	}
}

// TestWaitThroughSignals: signals that interrupt ppoll (the Go runtime's
// preemption signal, SIGURG, among them) do not end a Wait early; it waits
// out the time it was given.
func TestWaitThroughSignals(t *testing.T) {
	r, _ := pipe(t)
	w := newWaiter(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Go ignores SIGURG unless it preempts: each one interrupts whatever
		// system call the receiving thread is blocked in.
		for {
			select {
			case <-stop:
				return
			default:
				unix.Kill(unix.Getpid(), unix.SIGURG)
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	const timeout = 200 * time.Millisecond
	start := time.Now()
	res, err := w.Wait(r, timeout)
	expect(t, "nothing to read, signals meanwhile", res, err, Timeout)
	if waited := time.Since(start); waited < timeout {
		t.Fatalf("Wait(%v) returned after %v", timeout, waited)
	}
}
