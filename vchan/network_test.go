//go:build linux

package vchan

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/ring"
	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/testutil"
)

// Behaviour a socket user expects: refused, address in use, a server that
// survives running short of grants. Each runs in process and across
// processes (vchan-simd).

// hostPair returns a server host (domain 0) and a client host (domain 1),
// in process or across processes.
func hostPair(t *testing.T, crossProcess bool, cfg SimulatorConfig) (srv, cli *Host, dir string) {
	t.Helper()
	if crossProcess {
		_, dir = testutil.StartDaemon(t, simdaemon.Config{GrantLimit: cfg.GrantLimit})
		return simHost(t, dir, 0), simHost(t, dir, 1), dir
	}
	sim := NewSimulatorConfig(cfg)
	return sim.Domain(0), sim.Domain(1), ""
}

func forBothHosts(t *testing.T, f func(t *testing.T, crossProcess bool)) {
	for _, cross := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-process", true: "cross-process"}[cross], func(t *testing.T) {
			f(t, cross)
		})
	}
}

// wantOpError checks the net.OpError at the top of err.
func wantOpError(t *testing.T, what string, err error, op string, cause error) {
	t.Helper()
	oe, ok := err.(*net.OpError)
	if !ok {
		t.Fatalf("%s = %T %v, want a *net.OpError at the top", what, err, err)
	}
	if oe.Op != op || oe.Net != Network || !errors.Is(err, cause) {
		t.Fatalf("%s = %v (Op %q, Net %q), want Op %q, Net %q, wrapping %v", what, err, oe.Op, oe.Net, op, Network, cause)
	}
}

func TestDialRefused(t *testing.T) {
	forBothHosts(t, func(t *testing.T, cross bool) {
		srv, cli, _ := hostPair(t, cross, SimulatorConfig{})
		start := time.Now()
		_, err := Dial(0, "nobody", &Config{Host: cli})
		took := time.Since(start)
		wantOpError(t, "Dial to nothing", err, "dial", syscall.ECONNREFUSED)
		if !strings.Contains(err.Error(), "/local/domain/0/data/vchan/1/nobody") || !strings.Contains(err.Error(), "no vchan server is listening") {
			t.Errorf("error %q does not say what was refused", err)
		}
		// Refused, not timed out: DefaultDialTimeout is 10 s.
		if took > 2*time.Second {
			t.Errorf("refusing took %v", took)
		}
		t.Logf("refused after %v", took)

		// A server that has come and gone is refused too.
		ln, err := Listen(1, "gone", &Config{Host: srv})
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if _, err := Dial(0, "gone", &Config{Host: cli}); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("Dial after the Listener closed = %v, want ECONNREFUSED", err)
		}
	})
}

func TestDialWaitForServer(t *testing.T) {
	forBothHosts(t, func(t *testing.T, cross bool) {
		srv, cli, _ := hostPair(t, cross, SimulatorConfig{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dialed := make(chan error, 1)
		go func() {
			c, err := (&Dialer{Config: &Config{Host: cli, WaitForServer: true}}).DialContext(ctx, "vchan", "0:later")
			if err == nil {
				_, err = c.Write([]byte("hello"))
				c.Close()
			}
			dialed <- err
		}()
		// Start the server once the Dial is surely waiting: a refusal
		// would have come back within this time.
		select {
		case err := <-dialed:
			t.Fatalf("Dial with WaitForServer returned before any server: %v", err)
		case <-time.After(time.Second):
		}
		ln, err := Listen(1, "later", &Config{Host: srv})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello" {
			t.Errorf("read %q, %v", got, err)
		}
		if err := <-dialed; err != nil {
			t.Fatalf("Dial waiting for the server: %v", err)
		}
	})
}

func TestListenAddressInUse(t *testing.T) {
	forBothHosts(t, func(t *testing.T, cross bool) {
		srv, cli, _ := hostPair(t, cross, SimulatorConfig{})
		ln, err := Listen(1, "inuse", &Config{Host: srv})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Listen(1, "inuse", &Config{Host: srv})
		wantOpError(t, "a second Listen", err, "listen", syscall.EADDRINUSE)
		// The first still serves.
		go func() {
			if c, err := Dial(0, "inuse", &Config{Host: cli}); err == nil {
				c.Write([]byte("x"))
				c.Close()
			}
		}()
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("the first Listener after a second Listen failed: %v", err)
		}
		c.Close()
		ln.Close()
		ln2, err := Listen(1, "inuse", &Config{Host: srv})
		if err != nil {
			t.Fatalf("Listen after the first Listener closed: %v", err)
		}
		ln2.Close()
	})
}

// TestListenTakesOverFromKilledServer: a Listener whose process was killed
// with -9 left its directory in xenstore; the next Listen takes it over.
func TestListenTakesOverFromKilledServer(t *testing.T) {
	_, dir := testutil.StartDaemon(t, simdaemon.Config{})
	child := startChild(t, dir, "listen-idle", 0, 1, "takeover")
	h0, h1 := simHost(t, dir, 0), simHost(t, dir, 1)
	if _, err := Listen(1, "takeover", &Config{Host: h0}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen while the child listens = %v, want EADDRINUSE", err)
	}
	child.Kill()
	ln, err := Listen(1, "takeover", &Config{Host: h0})
	if err != nil {
		t.Fatalf("Listen after the listening process was killed: %v", err)
	}
	defer ln.Close()
	go func() {
		if c, err := Dial(0, "takeover", &Config{Host: h1}); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept on the Listener that took over: %v", err)
	}
	c.Close()
}

// TestAcceptSurvivesGrantLimit: with 1 MiB rings the default grant limit
// (1024 pages; a ring pair costs 513) holds one connection and no spare
// ring. Accept must wait, not fail; a client dialling meanwhile must wait,
// not be refused; both go on when the first connection closes.
func TestAcceptSurvivesGrantLimit(t *testing.T) {
	forBothHosts(t, func(t *testing.T, cross bool) {
		srv, cli, _ := hostPair(t, cross, SimulatorConfig{})
		cfg := &Config{Host: srv, ReadBufferSize: MaxRingSize, WriteBufferSize: MaxRingSize}
		ln, err := Listen(1, "big", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ln.SetDeadline(time.Now().Add(20 * time.Second))
		c1, err := Dial(0, "big", &Config{Host: cli})
		if err != nil {
			t.Fatal(err)
		}
		s1, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			c   net.Conn
			err error
		}
		accepted := make(chan result, 1)
		go func() {
			c, err := ln.Accept()
			accepted <- result{c, err}
		}()
		dialed := make(chan result, 1)
		go func() {
			c, err := Dial(0, "big", &Config{Host: cli})
			dialed <- result{c, err}
		}()
		select {
		case r := <-accepted:
			t.Fatalf("Accept while short of grants returned %v, want it to wait", r.err)
		case r := <-dialed:
			t.Fatalf("Dial while the server is short of grants returned %v, want it to wait", r.err)
		case <-time.After(500 * time.Millisecond):
		}
		c1.Close()
		s1.Close()
		a, d := <-accepted, <-dialed
		if a.err != nil || d.err != nil {
			t.Fatalf("after the first connection closed: Accept %v, Dial %v", a.err, d.err)
		}
		defer a.c.Close()
		defer d.c.Close()
		if _, err := d.c.Write([]byte("second")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(a.c, buf); err != nil || string(buf) != "second" {
			t.Fatalf("the second connection read %q, %v", buf, err)
		}
	})
}

// TestAcceptTimeoutSaysWhy: an Accept whose deadline passes while the
// Listener cannot offer a ring (here the grant limit, held by the first
// connection) fails as a timeout that names the cause; one that times out
// with a ring offered is the plain timeout.
func TestAcceptTimeoutSaysWhy(t *testing.T) {
	srv, cli, _ := hostPair(t, false, SimulatorConfig{})
	ln, err := Listen(1, "why", &Config{Host: srv, ReadBufferSize: MaxRingSize, WriteBufferSize: MaxRingSize})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	c1, err := Dial(0, "why", &Config{Host: cli})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	s1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = ln.Accept()
	t.Logf("Accept while short of grants, past its deadline: %v", err)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) ||
		!errors.Is(err, gnt.ErrNoSpace) || !strings.Contains(err.Error(), "no ring offered") {
		t.Fatalf("Accept = %v; want a timeout that is os.ErrDeadlineExceeded and gnt.ErrNoSpace and says no ring is offered", err)
	}
	s1.Close()
	c1.Close()
	// The shortage is over: the next Accept offers a ring, and its timeout
	// is the plain one.
	ln.SetDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = ln.Accept()
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, gnt.ErrNoSpace) || strings.Contains(err.Error(), "no ring offered") {
		t.Fatalf("Accept with a ring offered, past its deadline = %v; want the plain timeout", err)
	}
}

// TestManyDialsAtOnce: 64 clients dial one Listener at once; each is
// served in turn, none waits forever, and afterwards the directory holds
// one free ring.
func TestManyDialsAtOnce(t *testing.T) {
	forBothHosts(t, func(t *testing.T, cross bool) {
		srv, cli, _ := hostPair(t, cross, SimulatorConfig{})
		ln, err := Listen(1, "many", &Config{Host: srv})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		const n = 64
		served := make(chan error, 1)
		go func() {
			for i := range n {
				c, err := ln.Accept()
				if err != nil {
					served <- fmt.Errorf("accept %d: %w", i, err)
					return
				}
				// Echo one line, so each client knows it was served by
				// its own connection.
				buf := make([]byte, 64)
				m, err := c.Read(buf)
				if err == nil {
					_, err = c.Write(buf[:m])
				}
				c.Close()
				if err != nil {
					served <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
			served <- nil
		}()
		errs := make(chan error, n)
		for i := range n {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				c, err := DialContext(ctx, 0, "many", &Config{Host: cli})
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				msg := fmt.Sprintf("client %d", i)
				if _, err := c.Write([]byte(msg)); err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(c)
				if err == nil && string(got) != msg {
					err = fmt.Errorf("client %d got %q", i, got)
				}
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if err := <-served; err != nil {
			t.Fatal(err)
		}
		// One free ring is published, and nothing else but the owner.
		keys, err := ln.xs.(fullXS).Directory(ln.addr.Path)
		slices.Sort(keys)
		if err != nil || strings.Join(keys, " ") != "event-channel owner ring-ref" {
			t.Errorf("the directory holds %v (%v), want [event-channel owner ring-ref]", keys, err)
		}
		ln.mu.Lock()
		free := ln.pending != nil && ln.pending.ep.PeerLive() == ring.LiveWaiting
		ln.mu.Unlock()
		if !free {
			t.Error("no free ring is published after the clients were served")
		}
	})
}

func TestImpossibleDomainIDs(t *testing.T) {
	sim := NewSimulator()
	for _, id := range []uint16{MaxDomainID + 1, 0x7FF0, 0x7FF4, 0xFFFF} {
		if _, err := Listen(id, "p", &Config{Host: sim.Domain(0)}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Listen for domain %#x = %v, want an error naming the reserved ID", id, err)
		}
		if _, err := Dial(id, "p", &Config{Host: sim.Domain(1)}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Dial to domain %#x = %v, want an error naming the reserved ID", id, err)
		}
	}
}

func TestZeroHost(t *testing.T) {
	_, err := Listen(1, "p", &Config{Host: &Host{}})
	wantOpError(t, "Listen on a zero Host", err, "listen", err)
	if oe := err.(*net.OpError); oe.Addr != nil {
		t.Errorf("Addr = %#v, want a nil interface when the path is unknown", oe.Addr)
	}
	if _, err := Dial(0, "p", &Config{Host: &Host{}}); err == nil || !strings.Contains(err.Error(), "zero Host") {
		t.Errorf("Dial on a zero Host = %v", err)
	}
}

// TestOpErrorOfAnotherNetwork: an OpError of the unix socket under the
// cross-process simulator is wrapped, not passed on as the top error.
func TestOpErrorOfAnotherNetwork(t *testing.T) {
	inner := &net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNRESET}
	err := opError("dial", nil, &Addr{Domain: 0, Path: "/a"}, fmt.Errorf("xenstore: %w", inner))
	wantOpError(t, "opError", err, "dial", syscall.ECONNRESET)
	var typedNil *Addr
	if oe := opError("dial", typedNil, typedNil, io.ErrUnexpectedEOF).(*net.OpError); oe.Source != nil || oe.Addr != nil {
		t.Errorf("a nil *Addr became a typed nil: %#v", oe)
	}
}

func TestBufferedAvailable(t *testing.T) {
	_, srv, cli := connPair(t, 4096, 4096)
	if n := srv.Buffered(); n != 0 {
		t.Errorf("Buffered on a fresh Conn = %d", n)
	}
	if n := cli.Available(); n != 4096 {
		t.Errorf("Available on a fresh Conn = %d, want 4096", n)
	}
	if _, err := cli.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if n := srv.Buffered(); n != 1000 {
		t.Errorf("Buffered after 1000 bytes = %d", n)
	}
	if n := cli.Available(); n != 3096 {
		t.Errorf("Available after 1000 bytes = %d, want 3096", n)
	}
	srv.Read(make([]byte, 400))
	if n := srv.Buffered(); n != 600 {
		t.Errorf("Buffered after reading 400 = %d", n)
	}
	srv.Close()
	if n, m := srv.Buffered(), srv.Available(); n != 0 || m != 0 {
		t.Errorf("after Close: Buffered %d, Available %d", n, m)
	}
}

// TestManyListenersUnderQuotas: 200 Listeners on distinct ports at once in
// one unprivileged domain, under C xenstored's default quotas (10 open
// transactions, 128 watches, 1000 nodes, 20 outstanding requests per
// domain), and 200 Dials at once from another: every pair connects and
// moves checksummed data, or gets a Temporary error naming the quota,
// which the caller retries. Nothing hangs.
func TestManyListenersUnderQuotas(t *testing.T) {
	forBothHosts(t, func(t *testing.T, cross bool) {
		var srvH, cliH *Host
		if cross {
			_, dir := testutil.StartDaemon(t, simdaemon.Config{})
			srvH, cliH = simHost(t, dir, 1), simHost(t, dir, 2)
		} else {
			sim := NewSimulator()
			srvH, cliH = sim.Domain(1), sim.Domain(2)
		}
		const n = 200
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// retry calls f until it succeeds, fails for good, or ctx ends;
		// only Temporary errors that name a quota are retried.
		var refused atomic.Int64
		retry := func(what string, f func() error) error {
			for {
				err := f()
				if err != nil {
					refused.Add(1)
				}
				var ne net.Error
				//lint:ignore SA1019 Temporary is what a caller's retry loop checks
				if err == nil || !errors.As(err, &ne) || !ne.Temporary() {
					return err
				}
				if !strings.Contains(err.Error(), "quota") {
					return fmt.Errorf("%s: a Temporary error that names no quota: %w", what, err)
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: still refused when the test's time ran out: %w", what, err)
				case <-time.After(time.Millisecond):
				}
			}
		}
		lns := make([]*Listener, n)
		errs := make(chan error, n)
		for i := range n {
			go func() {
				errs <- retry("Listen", func() (err error) {
					lns[i], err = Listen(2, fmt.Sprint("q", i), &Config{Host: srvH, ReadBufferSize: 1, WriteBufferSize: 1})
					return err
				})
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for _, ln := range lns {
			defer ln.Close()
			ln.SetDeadline(time.Now().Add(60 * time.Second))
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return // the client reports it
				}
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := io.ReadFull(c, buf); err == nil {
					fmt.Fprintf(c, "%08x", crc32.ChecksumIEEE(buf))
				}
			}()
		}
		for i := range n {
			go func() {
				var c *Conn
				err := retry("Dial", func() (err error) {
					c, err = DialContext(ctx, 1, fmt.Sprint("q", i), &Config{Host: cliH})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				msg := make([]byte, 4096)
				for j := range msg {
					msg[j] = byte(i * j)
				}
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				sum := make([]byte, 8)
				if _, err := io.ReadFull(c, sum); err != nil || string(sum) != fmt.Sprintf("%08x", crc32.ChecksumIEEE(msg)) {
					errs <- fmt.Errorf("pair %d: checksum %q, %v", i, sum, err)
					return
				}
				errs <- nil
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		t.Logf("%d pairs; %d attempts refused for a quota and retried", n, refused.Load())
	})
}
