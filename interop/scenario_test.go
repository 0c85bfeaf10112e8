//go:build linux

package interop

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
	"github.com/vchan-go/vchan/vchan"
)

// scenarioIterations is how many connections each cell of
// TestScenarioCloseRightAfterWriteC runs: a quick count in the suite, and
// thousands with VCHAN_SCENARIO_ITERATIONS (docs/SCENARIOS.md).
func scenarioIterations(t *testing.T) int {
	if v := os.Getenv("VCHAN_SCENARIO_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("VCHAN_SCENARIO_ITERATIONS=%q: want a positive number", v)
		}
		return n
	}
	if testing.Short() {
		return 5
	}
	return 30
}

// TestScenarioCloseRightAfterWriteC: the formal spec's Availability
// scenario between Go and Debian's C libxenvchan: the sender writes and
// closes at once, and the receiver must get every byte, then the end. C
// sends with vchan-peer's cat mode and -x (close as soon as stdin is
// written out) and receives with cat mode (until the peer closed and the
// ring is drained); Go sends with Write then Close, and receives with
// io.ReadAll. Both roles, in-page and 64 KiB rings, messages of up to three
// rings.
func TestScenarioCloseRightAfterWriteC(t *testing.T) {
	e := getEnv(t)
	n := scenarioIterations(t)
	for _, rc := range []ringCase{{0, 0}, {65536, 65536}} {
		for _, goServer := range []bool{true, false} {
			for _, goSends := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/goSends=%v", rc, role(goServer), goSends)
				t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(rc.read), 11))
					for i := range n {
						args := []string{"-m", "cat"}
						if !goSends {
							args = append(args, "-x")
						}
						c, p, _ := connect(t, e, goServer, rc, args...)
						rs, _ := c.RingSizes()
						msg := make([]byte, 1+rng.IntN(3*rs))
						for j := range msg {
							msg[j] = byte(rng.Uint32())
						}
						c.SetDeadline(time.Now().Add(30 * time.Second))
						var got []byte
						var err error
						if goSends {
							// Read C's stdout meanwhile: a pipe it cannot
							// write would stop it reading the vchan.
							type result struct {
								b   []byte
								err error
							}
							out := make(chan result, 1)
							go func() {
								b, err := io.ReadAll(p.Stdout)
								out <- result{b, err}
							}()
							if _, err := c.Write(msg); err != nil {
								t.Fatalf("iteration %d: Go write: %v", i, err)
							}
							c.Close()
							r := <-out
							got, err = r.b, r.err
						} else {
							go func() {
								p.Stdin.Write(msg)
								p.Stdin.Close()
							}()
							got, err = io.ReadAll(c)
						}
						if werr := p.Wait(30 * time.Second); werr != nil {
							t.Fatalf("iteration %d: vchan-peer: %v", i, werr)
						}
						if err != nil || !bytes.Equal(got, msg) {
							t.Fatalf("iteration %d: %d-byte message, received %d bytes (crc %08x, want %08x), then %v",
								i, len(msg), len(got), crc32.ChecksumIEEE(got), crc32.ChecksumIEEE(msg), err)
						}
						c.Close()
					}
				})
			}
		}
	}
}

// TestScenarioReceiverBlocksFirstC: the formal spec's QubesDB scenario
// between Go and Debian's C libxenvchan: each byte is written while the
// receiver is already blocked waiting for it, so only the event channel
// can wake it. One side pings (writes 1 byte, then blocks reading the
// answer), the other echoes (blocks reading, then writes it back): Go pings
// C's blocking echo mode, and C's blocking ping mode pings a Go echo. The Go
// end spins not at all (SetSpinWait(0)), so each of its waits is a real
// event-channel wait. Both roles, in-page and 64 KiB rings.
func TestScenarioReceiverBlocksFirstC(t *testing.T) {
	e := getEnv(t)
	n := scenarioIterations(t)
	const trips = 100
	for _, rc := range []ringCase{{0, 0}, {65536, 65536}} {
		for _, goServer := range []bool{true, false} {
			for _, goPings := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/goPings=%v", rc, role(goServer), goPings)
				t.Run(name, func(t *testing.T) {
					for i := range n {
						mode := "echo"
						if !goPings {
							mode = "ping"
						}
						c, p, _ := connect(t, e, goServer, rc, "-m", mode)
						c.SetSpinWait(0)
						c.SetDeadline(time.Now().Add(30 * time.Second))
						var err error
						if goPings {
							err = pingC(c, trips, byte(i))
						} else {
							err = echoC(c, p, trips)
						}
						if err != nil {
							t.Fatalf("connection %d: %v", i, err)
						}
						c.Close()
						if werr := p.Wait(30 * time.Second); werr != nil {
							t.Fatalf("connection %d: vchan-peer: %v", i, werr)
						}
					}
				})
			}
		}
	}
}

// pingC sends trips single bytes, each after the previous one came back,
// and checks each answer.
func pingC(c *vchan.Conn, trips int, seed byte) error {
	var b [1]byte
	for j := range trips {
		want := seed + byte(j)
		b[0] = want
		if _, err := c.Write(b[:]); err != nil {
			return fmt.Errorf("round trip %d: write: %w", j, err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return fmt.Errorf("round trip %d: read: %w", j, err)
		}
		if b[0] != want {
			return fmt.Errorf("round trip %d: echo %#x, want %#x", j, b[0], want)
		}
	}
	return nil
}

// echoC asks the C peer (ping mode) for trips round trips and writes back
// each byte it sends ('x', from vchan-peer's buffer), then waits for its
// "ok".
func echoC(c *vchan.Conn, p *testutil.Proc, trips int) error {
	if _, err := fmt.Fprintf(p.Stdin, "%d\n", trips); err != nil {
		return err
	}
	var b [1]byte
	for j := range trips {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return fmt.Errorf("round trip %d: read: %w", j, err)
		}
		if b[0] != 'x' {
			return fmt.Errorf("round trip %d: C sent %#x, want 'x'", j, b[0])
		}
		if _, err := c.Write(b[:]); err != nil {
			return fmt.Errorf("round trip %d: write: %w", j, err)
		}
	}
	if line, err := p.Stdout.ReadString('\n'); err != nil || line != "ok\n" {
		return fmt.Errorf("vchan-peer printed %q, %v after the round trips", line, err)
	}
	p.Stdin.Close()
	return nil
}
