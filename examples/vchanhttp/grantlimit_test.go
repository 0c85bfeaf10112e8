package vchanhttp

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vchan-go/vchan/examples/internal/testenv"
	"github.com/vchan-go/vchan/vchan"
)

// pagesPerPair is what a server grants for one ring pair: the shared page
// and 2^(order-12) pages for each ring.
func pagesPerPair(ringSize int) int { return 1 + 2*ringSize/4096 }

// TestHTTPGrantLimitInTurn: with 1 MiB rings a ring pair costs 513 pages,
// so the default grant limit of 1024 pages holds one pair, not two. The
// Listener publishes one ring; once a client takes it, no fresh one can be
// published while that connection lives. Three keep-alive clients come in
// turn: each one waits while the previous one holds its connection, and
// gets through once the previous Transport closes its idle connection.
// Serve must go on all along.
func TestHTTPGrantLimitInTurn(t *testing.T) {
	testenv.CheckGoroutines(t)
	const ringSize = 1 << 20
	per := pagesPerPair(ringSize)
	limit := 1024
	if 2*per <= limit || per > limit {
		t.Fatalf("the test wants a limit (%d) with room for exactly one pair of %d pages", limit, per)
	}
	p := testenv.InProcessConfig(t, vchan.SimulatorConfig{GrantLimit: limit})
	ctx := testenv.Context(t, time.Minute)
	s := startServer(t, p.Server, ringSize)
	granted := func() int { return p.Sim.Resources(0).Granted }
	if g := granted(); g != per {
		t.Fatalf("after Listen dom0 grants %d pages, want %d (one published ring pair)", g, per)
	}

	var clients [3]interface{ CloseIdleConnections() }
	for i := range clients {
		c := newClient(t, p.Client, true)
		clients[i] = c
		done := make(chan error, 1)
		go func() {
			for j := range 10 {
				if err := post(ctx, c, uint64(20000+100*i+j)); err != nil {
					done <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
			done <- nil
		}()
		if i > 0 {
			// The previous client holds the only ring pair the limit
			// allows: this one cannot connect, whatever the timing.
			select {
			case err := <-done:
				t.Fatalf("client %d finished (err %v) while client %d held the only ring pair the grant limit allows", i, err, i-1)
			case <-time.After(300 * time.Millisecond):
			}
			s.running(t)
			if g := granted(); g != per {
				t.Errorf("while client %d holds its connection, dom0 grants %d pages, want %d (that connection's rings, no spare)", i-1, g, per)
			}
			clients[i-1].CloseIdleConnections()
		}
		if err := testenv.Wait(t, ctx, done, fmt.Sprintf("client %d", i)); err != nil {
			t.Fatal(err)
		}
		s.running(t)
	}
	clients[2].CloseIdleConnections()
	s.shutdown(t)
	p.CheckReleased(t)
	if n, m := s.ln.accepted.Load(), s.ln.maxOpen.Load(); n != 3 || m != 1 {
		t.Errorf("accepted %d connections, at most %d at once; want 3, one at a time", n, m)
	}
}

// TestHTTPGrantLimitConcurrent: 8 keep-alive clients at once, 25 requests
// each, with 64 KiB rings (33 pages a pair) and a grant limit of 99 pages:
// at most three connections at once. The first three to connect hold their
// connections until all three are in, so the limit is certainly reached;
// the other five wait for a ring, and every request gets through.
func TestHTTPGrantLimitConcurrent(t *testing.T) {
	testenv.CheckGoroutines(t)
	const ringSize = 65536
	const maxConns = 3
	limit := maxConns * pagesPerPair(ringSize)
	p := testenv.InProcessConfig(t, vchan.SimulatorConfig{GrantLimit: limit})
	ctx := testenv.Context(t, time.Minute)
	s := startServer(t, p.Server, ringSize)

	var connected atomic.Int64
	allIn := make(chan struct{})
	errs := make(chan error, 8)
	for g := range 8 {
		c := newClient(t, p.Client, true)
		go func() {
			defer c.CloseIdleConnections()
			for i := range 25 {
				if err := post(ctx, c, uint64(30000+100*g+i)); err != nil {
					errs <- fmt.Errorf("client %d: %w", g, err)
					return
				}
				if i == 0 {
					if connected.Add(1) == maxConns {
						close(allIn)
					}
					select {
					case <-allIn:
					case <-ctx.Done():
						errs <- fmt.Errorf("client %d: only %d clients could connect at once, want %d", g, connected.Load(), maxConns)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := testenv.Wait(t, ctx, errs, "the clients"); err != nil {
			t.Error(err)
		}
	}
	s.shutdown(t)
	p.CheckReleased(t)
	if n, m := s.ln.accepted.Load(), s.ln.maxOpen.Load(); n != 8 || m != maxConns {
		t.Errorf("accepted %d connections, at most %d at once; want 8, at most %d at once", n, m, maxConns)
	}
}
