// Conformance of vchan connections with the net.Conn contract, checked by
// golang.org/x/net/nettest on the simulated Xen host.
package conformance_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/vchan-go/vchan/internal/testutil"
	"github.com/vchan-go/vchan/vchan"
)

func TestMain(m *testing.M) {
	os.Exit(testutil.Run(m))
}

// ringPairs are the server's (read, write) minimum sizes under test: the
// in-page 1 KiB/2 KiB (libxenvchan's smallest), single pages, Qubes' 64 KiB, the 1 MiB
// maximum, and asymmetric pairs mixing an in-page ring with a large one.
var ringPairs = []struct {
	name        string
	read, write int
}{
	{"inpage-1x1", 1, 1},
	{"4096x4096", 4096, 4096},
	{"65536x65536", 65536, 65536},
	{"1MiBx1MiB", 1 << 20, 1 << 20},
	{"asym-65536x4096", 65536, 4096},
	{"asym-2048x1MiB", 2048, 1 << 20},
}

func TestConn(t *testing.T) {
	for _, rp := range ringPairs {
		for _, serverFirst := range []bool{true, false} {
			name := rp.name + "/client-first"
			if serverFirst {
				name = rp.name + "/server-first"
			}
			t.Run(name, func(t *testing.T) {
				nettest.TestConn(t, makePipe(t, rp.read, rp.write, serverFirst))
			})
		}
	}
}

// TestConnCrossProcess runs the same conformance suite with the simulated
// host in a separate process: the vchan-simd daemon, which passes grants as
// memfds and event channels over sockets, as the cross-process tools use it.
func TestConnCrossProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the cross-process simulator (vchan-simd) needs Linux; the in-process tests above cover the rest")
	}
	_, dir := testutil.StartSimd(t, "")
	for _, rp := range ringPairs {
		t.Run(rp.name, func(t *testing.T) {
			dom0 := testutil.Join(t, vchan.SimHost, dir, 0)
			dom1 := testutil.Join(t, vchan.SimHost, dir, 1)
			nettest.TestConn(t, makeHostPipe(t, dom0, dom1, rp.read, rp.write, true, nil))
		})
	}
}

// makePipe returns a nettest.MakePipe that connects a simulated dom0 server
// to a simulated dom1 client. Its stop function checks that closing both
// ends returned every grant, mapping and event channel.
func makePipe(t *testing.T, read, write int, serverFirst bool) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		sim := vchan.NewSimulator()
		mp := makeHostPipe(t, sim.Domain(0), sim.Domain(1), read, write, serverFirst, func() {
			for _, dom := range []uint16{0, 1} {
				if res := sim.Resources(dom); res != (vchan.Resources{}) {
					t.Errorf("dom%d still holds %+v after both ends closed", dom, res)
				}
			}
		})
		return mp()
	}
}

// makeHostPipe connects a server on host srvHost (as domain 0) to a client
// on cliHost (domain 1); check runs after both ends are closed.
func makeHostPipe(t *testing.T, srvHost, cliHost *vchan.Host, read, write int, serverFirst bool, check func()) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		ln, err := vchan.Listen(1, "5000", &vchan.Config{Host: srvHost, ReadBufferSize: read, WriteBufferSize: write})
		if err != nil {
			return nil, nil, nil, err
		}
		defer ln.Close()
		type result struct {
			c   net.Conn
			err error
		}
		dialed := make(chan result, 1)
		go func() {
			c, err := vchan.Dial(0, "5000", &vchan.Config{Host: cliHost})
			dialed <- result{c, err}
		}()
		srv, err := ln.Accept()
		if err != nil {
			return nil, nil, nil, err
		}
		r := <-dialed
		if r.err != nil {
			srv.Close()
			return nil, nil, nil, r.err
		}
		if err := ln.Close(); err != nil {
			return nil, nil, nil, err
		}
		stop = func() {
			srv.Close()
			r.c.Close()
			if check != nil {
				check()
			}
		}
		if serverFirst {
			return srv, r.c, stop, nil
		}
		return r.c, srv, stop, nil
	}
}

// TestListener checks what nettest does not: sequential clients on one
// Listener, Close unblocking Accept, and the Accept deadline.
func TestListener(t *testing.T) {
	sim := vchan.NewSimulator()
	ln, err := vchan.Listen(1, "6000", &vchan.Config{Host: sim.Domain(0)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("client %d", i)
		go func() {
			c, err := vchan.Dial(0, "6000", &vchan.Config{Host: sim.Domain(1)})
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			defer c.Close()
			c.Write([]byte(msg))
			c.Flush()
		}()
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("accept %d: %v", i, err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("accept %d read %q, %v; want %q", i, buf[:n], err, msg)
		}
		c.Close()
	}

	ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err = ln.Accept()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Accept past its deadline = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Accept took %v to time out", d)
	}
	ln.SetDeadline(time.Time{})

	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if res := sim.Resources(0); res != (vchan.Resources{}) {
		t.Errorf("dom0 holds %+v after the listener and all connections closed", res)
	}
}
