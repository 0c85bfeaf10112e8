package vchan

import (
	"testing"
	"time"
)

func TestSpinFindsProgress(t *testing.T) {
	var c Conn
	c.SetSpinWait(time.Second)
	calls := 0
	ready := func() (int, error) {
		calls++
		if calls == 1000 {
			return 1, nil
		}
		return 0, nil
	}
	if !c.spin(ready) {
		t.Fatalf("spin gave up after %d polls; progress came at poll 1000 of %d", calls, spinPolls(time.Second))
	}
	if calls != 1000 {
		t.Fatalf("spin polled %d times, want it to stop at the poll that found progress (1000)", calls)
	}
}

func TestSpinIsBoundedByPolls(t *testing.T) {
	var c Conn
	d := 50 * time.Microsecond
	c.SetSpinWait(d)
	calls := 0
	never := func() (int, error) { calls++; return 0, nil }
	if c.spin(never) {
		t.Fatal("spin reported progress that never came")
	}
	if want := spinPolls(d); calls != want {
		t.Fatalf("spin polled %d times, want spinPolls(%v) = %d", calls, d, want)
	}
	c.SetSpinWait(0)
	calls = 0
	if c.spin(never) || calls != 0 {
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
}
