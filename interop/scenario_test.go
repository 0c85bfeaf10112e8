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
