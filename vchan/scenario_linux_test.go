//go:build linux

package vchan

import (
	"fmt"
	"testing"

	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/testutil"
)

// TestScenarioCloseRightAfterWriteCrossProcess: the same across the
// cross-process simulator, where the two ends' events and unmap
// notifications pass through the daemon.
func TestScenarioCloseRightAfterWriteCrossProcess(t *testing.T) {
	_, dir := testutil.StartDaemon(t, simdaemon.Config{})
	h0, h1 := simHost(t, dir, 0), simHost(t, dir, 1)
	for _, ring := range scenarioRings {
		for _, serverSends := range []bool{false, true} {
			t.Run(fmt.Sprintf("ring%d/serverSends=%v", ring, serverSends), func(t *testing.T) {
				scenarioPairsOn(t, h0, h1, ring, scenarioIterations()/10, closeRightAfterWrite(ring, serverSends))
			})
		}
	}
}
