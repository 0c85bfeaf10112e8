//go:build linux

package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// TestRingCarriesEveryByte: random bytes in reads of random sizes through
// rings smaller and larger than the buffers arrive whole and in order, and
// the receiver ends at the end of the input.
func TestRingCarriesEveryByte(t *testing.T) {
	for _, size := range []int{16 << 10, 64 << 10, 1 << 20} {
		f, err := os.Create(filepath.Join(t.TempDir(), "ring"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(header + size)); err != nil {
			t.Fatal(err)
		}
		r, err := mapRing(f, size)
		if err != nil {
			t.Fatal(err)
		}
		atomic.StoreUint32(r.state, stateReady)
		in := make([]byte, 5<<20+12345)
		rng := rand.New(rand.NewPCG(1, uint64(size)))
		for i := range in {
			in[i] = byte(rng.Uint32())
		}
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() { done <- r.recv(&out) }()
		if err := r.send(iotest.HalfReader(bytes.NewReader(in))); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("ring %d: %d bytes out, want the %d bytes in, unchanged", size, out.Len(), len(in))
		}
	}
}
