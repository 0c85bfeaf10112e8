package vchan

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// The scenarios of talex5/spec-vchan, the TLA+ specification of the vchan
// protocol, where implementations went wrong; docs/SCENARIOS.md says what
// each checks and what C libxenvchan does. Each runs many times on fresh
// connections of one Listener, with spinning off, so that every wait goes
// through the event channel (spinning would hide a lost wake-up).

// scenarioRings are the server's ring sizes: libxenvchan's in-page rings,
// one page, and 64 KiB.
var scenarioRings = []int{1, 4096, 65536}

// scenarioIterations is how many connections each scenario runs per ring
// size: thousands, fewer under -short and the race detector.
func scenarioIterations() int {
	switch {
	case testing.Short():
		return 100
	case raceEnabled:
		return 300
	}
	return 2000
}

// scenarioPairs runs f on n fresh connections of one Listener, in process.
func scenarioPairs(t *testing.T, ring, n int, f func(i int, srv, cli *Conn) error) {
	t.Helper()
	sim := NewSimulator()
	scenarioPairsOn(t, sim.Domain(0), sim.Domain(1), ring, n, f)
}

// scenarioPairsOn runs f on n fresh connections of one Listener in the
// server host (domain 0) for the client host (domain 1).
func scenarioPairsOn(t *testing.T, server, client *Host, ring, n int, f func(i int, srv, cli *Conn) error) {
	t.Helper()
	ln, err := Listen(1, "spec", &Config{Host: server, ReadBufferSize: ring, WriteBufferSize: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range n {
		dialed := make(chan *Conn, 1)
		go func() {
			c, err := Dial(0, "spec", &Config{Host: client})
			if err != nil {
				t.Errorf("iteration %d: dial: %v", i, err)
			}
			dialed <- c
		}()
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		srv, err := ln.AcceptVchan()
		cli := <-dialed
		if err != nil || cli == nil {
			t.Fatalf("iteration %d: accept: %v", i, err)
		}
		for _, c := range []*Conn{srv, cli} {
			c.SetSpinWait(0)
			c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails, it does not stall the suite
		}
		err = f(i, srv, cli)
		srv.Close()
		cli.Close()
		if err != nil {
			t.Fatalf("ring %d, iteration %d: %v", ring, i, err)
		}
	}
}

// TestScenarioCloseRightAfterWrite: the sender writes and closes at once,
// without Flush; the receiver must still read every byte, then io.EOF
// (the spec's Availability property: data written before the sender closes
// is received). Sizes up to three rings, so the sender often closes while
// the receiver is still draining what it wrote last.
func TestScenarioCloseRightAfterWrite(t *testing.T) {
	for _, ring := range scenarioRings {
		for _, serverSends := range []bool{false, true} {
			t.Run(fmt.Sprintf("ring%d/serverSends=%v", ring, serverSends), func(t *testing.T) {
				scenarioPairs(t, ring, scenarioIterations(), closeRightAfterWrite(ring, serverSends))
			})
		}
	}
}

// closeRightAfterWrite is one iteration of TestScenarioCloseRightAfterWrite.
func closeRightAfterWrite(ring int, serverSends bool) func(i int, srv, cli *Conn) error {
	rng := rand.New(rand.NewPCG(uint64(ring), 7))
	return func(i int, srv, cli *Conn) error {
		sender, receiver := cli, srv
		if serverSends {
			sender, receiver = srv, cli
		}
		rs, _ := receiver.RingSizes()
		msg := make([]byte, 1+rng.IntN(3*rs))
		for j := range msg {
			msg[j] = byte(i + j*7)
		}
		sent := make(chan error, 1)
		go func() {
			_, err := sender.Write(msg)
			if cerr := sender.Close(); err == nil {
				err = cerr
			}
			sent <- err
		}()
		got, err := io.ReadAll(receiver)
		if serr := <-sent; serr != nil {
			return fmt.Errorf("sender: %v", serr)
		}
		if err != nil || !bytes.Equal(got, msg) {
			return fmt.Errorf("received %d of %d bytes (crc %08x, want %08x), then %v", len(got), len(msg), crc32.ChecksumIEEE(got), crc32.ChecksumIEEE(msg), err)
		}
		return nil
	}
}

// TestScenarioReceiverBlocksFirst: the receiver is blocked in Read before
// the sender writes (the QubesDB model: a receiver that sleeps without
// first checking the ring, or asks for its event too late, misses the
// wake-up and stalls). Each round trip must arrive within the deadline.
func TestScenarioReceiverBlocksFirst(t *testing.T) {
	for _, ring := range scenarioRings {
		t.Run(fmt.Sprintf("ring%d", ring), func(t *testing.T) {
			scenarioPairs(t, ring, scenarioIterations()/10, func(i int, srv, cli *Conn) error {
				buf := make([]byte, 8)
				for round := range 10 {
					got := make(chan error, 1)
					go func() {
						_, err := io.ReadFull(srv, buf)
						got <- err
					}()
					want := fmt.Sprintf("%04d%04d", i%10000, round)
					if _, err := cli.Write([]byte(want)); err != nil {
						return err
					}
					if err := <-got; err != nil || string(buf) != want {
						return fmt.Errorf("round %d: read %q, %v; want %q", round, buf, err, want)
					}
					// And back, so that both directions start blocked.
					go func() {
						_, err := io.ReadFull(cli, buf)
						got <- err
					}()
					if _, err := srv.Write([]byte(want)); err != nil {
						return err
					}
					if err := <-got; err != nil || string(buf) != want {
						return fmt.Errorf("round %d back: read %q, %v; want %q", round, buf, err, want)
					}
				}
				return nil
			})
		})
	}
}

// TestScenarioFillRingExactly: the writer fills the ring to the last byte,
// so the producer index is exactly one ring ahead of the consumer (the
// boundary where full and empty differ only by the index distance), then
// waits for space; the reader drains it, and so on.
func TestScenarioFillRingExactly(t *testing.T) {
	for _, ring := range scenarioRings {
		t.Run(fmt.Sprintf("ring%d", ring), func(t *testing.T) {
			scenarioPairs(t, ring, scenarioIterations()/20, func(i int, srv, cli *Conn) error {
				rs, _ := srv.RingSizes()
				msg := make([]byte, rs)
				got := make([]byte, rs)
				for lap := range 20 {
					for j := range msg {
						msg[j] = byte(i + lap + j)
					}
					if _, err := cli.Write(msg); err != nil {
						return fmt.Errorf("lap %d: write: %v", lap, err)
					}
					if a := cli.Available(); a != 0 {
						return fmt.Errorf("lap %d: %d bytes of space after filling the ring", lap, a)
					}
					// One more byte must block until the reader makes room.
					more := make(chan error, 1)
					go func() {
						_, err := cli.Write([]byte{byte(lap)})
						more <- err
					}()
					if _, err := io.ReadFull(srv, got); err != nil || !bytes.Equal(got, msg) {
						return fmt.Errorf("lap %d: read %v (equal %v)", lap, err, bytes.Equal(got, msg))
					}
					if err := <-more; err != nil {
						return fmt.Errorf("lap %d: the write after a full ring: %v", lap, err)
					}
					if _, err := io.ReadFull(srv, got[:1]); err != nil || got[0] != byte(lap) {
						return fmt.Errorf("lap %d: the byte after a full ring: %v, %d", lap, err, got[0])
					}
				}
				return nil
			})
		})
	}
}
