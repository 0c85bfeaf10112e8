package vchan

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// TestNoLostWakeup streams through the smallest rings many times, where
// reader and writer block on each other most often: a missed notification
// (a broken request-then-recheck / move-then-check pair, docs/PROTOCOL.md §4)
// shows up as a hang, caught here by a timeout.
func TestNoLostWakeup(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 20
	}
	want := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	for i := range iterations {
		_, srv, cli := connPair(t, 1, 1)
		done := make(chan []byte, 1)
		go func() {
			io.Copy(cli, bytes.NewReader(want))
			cli.Close()
		}()
		go func() {
			b, _ := io.ReadAll(srv)
			done <- b
		}()
		select {
		case got := <-done:
			if !bytes.Equal(got, want) {
				t.Fatalf("iteration %d: %d bytes arrived, corrupted or short", i, len(got))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: transfer hung (lost wake-up)", i)
		}
		srv.Close()
	}
}
