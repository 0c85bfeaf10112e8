//go:build unix

package vchan

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestIdleUsesNoCPU: connections blocked in Read (and an Accept) sleep on
// their event channels; they do not poll. Over 500 ms of idling the process
// must use a small fraction of one core.
func TestIdleUsesNoCPU(t *testing.T) {
	sim := NewSimulator()
	ln, err := Listen(1, "idle", &Config{Host: sim.Domain(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go ln.Accept() // blocks: nobody dials
	var conns []*Conn
	for range 5 {
		_, srv, cli := connPair(t, 1, 1)
		conns = append(conns, srv, cli)
	}
	for _, c := range conns {
		go c.Read(make([]byte, 1))
	}
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	before := cpuTime(t)
	time.Sleep(500 * time.Millisecond)
	used := cpuTime(t) - before
	if used > 50*time.Millisecond {
		t.Errorf("10 idle connections used %v of CPU in 500 ms; they should sleep", used)
	}
	t.Logf("CPU while idle: %v in 500 ms", used)
}

// TestConnectCloseCycles: many connect/close cycles return goroutines,
// grants, mappings, event channel ports and xenstore nodes to where they
// started.
func TestConnectCloseCycles(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	sim := NewSimulator()
	ln, err := Listen(1, "cycles", &Config{Host: sim.Domain(0), ReadBufferSize: 8192, WriteBufferSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	sim.Domain(1) // introduce the client's domain before counting
	startNodes := sim.XenstoreNodes()
	startRes := [2]Resources{sim.Resources(0), sim.Resources(1)}
	startG := runtime.NumGoroutine()
	buf := make([]byte, 16)
	for i := range cycles {
		cli, err := Dial(0, "cycles", &Config{Host: sim.Domain(1)})
		if err != nil {
			t.Fatalf("cycle %d: dial: %v", i, err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatalf("cycle %d: accept: %v", i, err)
		}
		cli.Write([]byte("ping"))
		if n, err := srv.Read(buf); err != nil || n != 4 {
			t.Fatalf("cycle %d: read %d, %v", i, n, err)
		}
		cli.Close()
		srv.Close()
	}
	if got := sim.XenstoreNodes(); got != startNodes {
		t.Errorf("xenstore nodes: %d after %d cycles, %d before", got, cycles, startNodes)
	}
	if got := [2]Resources{sim.Resources(0), sim.Resources(1)}; got != startRes {
		t.Errorf("resources after %d cycles %+v, before %+v", cycles, got, startRes)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > startG && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > startG {
		t.Errorf("goroutines: %d after %d cycles, %d before", got, cycles, startG)
	}
	ln.Close()
	if res := sim.Resources(0); res != (Resources{}) {
		t.Errorf("dom0 holds %+v after the listener closed", res)
	}
}
