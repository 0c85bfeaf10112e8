package vchan

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/ring"
)

// soakBytesEnv sets the total size of TestSoakAllOrders (both directions,
// all ring pairs), in bytes; the default is 1 GiB, 64 MiB under -race.
const soakBytesEnv = "VCHAN_SOAK_BYTES"

// soakLayouts returns every pair of ring orders a server can produce: for
// left and right in 10..20, those that ServerLayout returns for minimum
// sizes of exactly 2^left and 2^right.
func soakLayouts(t *testing.T) []ring.Layout {
	var ls []ring.Layout
	for left := uint16(ring.MinOrder); left <= ring.MaxOrder; left++ {
		for right := uint16(ring.MinOrder); right <= ring.MaxOrder; right++ {
			l, err := ring.ServerLayout(1<<left, 1<<right)
			if err != nil {
				t.Fatal(err)
			}
			if l == (ring.Layout{Left: left, Right: right}) {
				ls = append(ls, l)
			}
		}
	}
	return ls
}

// soakSource is the data every soak stream carries, repeated: random
// bytes over a period that is not a power of two, so that it never lines up
// with a ring.
var soakSource = sync.OnceValue(func() []byte {
	b := make([]byte, 1<<20+7)
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
})

// soakSize picks an I/O size: log-uniform from 1 byte to 256 KiB, so tiny,
// ring-sized and multi-ring calls all occur.
func soakSize(rng *rand.Rand) int { return 1 + rng.IntN(1<<rng.IntN(19)) }

// TestSoakAllOrders streams VCHAN_SOAK_BYTES (1 GiB by default) through
// every ring-order pair a server can produce, in both directions at once,
// with random write and read sizes; every byte is compared with what was
// sent, and a CRC-32C of each stream is compared at the end.
func TestSoakAllOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	total := int64(1 << 30)
	if raceEnabled {
		total = 64 << 20
	}
	if v := os.Getenv(soakBytesEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of bytes", soakBytesEnv, v)
		}
		total = n
	}
	layouts := soakLayouts(t)
	perStream := total / int64(2*len(layouts))
	t.Logf("%d MiB in total: %d ring pairs, %d KiB each way per pair (race detector: %v; set %s to change)",
		total>>20, len(layouts), perStream>>10, raceEnabled, soakBytesEnv)
	start := time.Now()
	for _, l := range layouts {
		_, srv, cli := connPair(t, 1<<l.Left, 1<<l.Right)
		if r, w := srv.RingSizes(); r != 1<<l.Left || w != 1<<l.Right {
			t.Fatalf("asked for %v, the server got rings %d/%d", l, r, w)
		}
		seed := uint64(l.Left)<<8 | uint64(l.Right)
		errc := make(chan error, 2)
		for dir, ends := range [2][2]*Conn{{srv, cli}, {cli, srv}} {
			go func() { errc <- soakStream(ends[0], ends[1], perStream, seed*2+uint64(dir)) }()
		}
		for range 2 {
			if err := <-errc; err != nil {
				t.Fatalf("%v: %v", l, err)
			}
		}
		srv.Close()
		cli.Close()
	}
	d := time.Since(start)
	t.Logf("%d MiB in %v: %.0f MB/s", (perStream*int64(2*len(layouts)))>>20, d.Round(time.Millisecond),
		float64(perStream*int64(2*len(layouts)))/d.Seconds()/1e6)
}

// soakStream sends n bytes of soakSource from w to r with random sizes and
// checks them on arrival.
func soakStream(w, r *Conn, n int64, seed uint64) error {
	src := soakSource()
	deadline := time.Now().Add(2 * time.Minute) // a hang fails, it does not stall the run
	w.SetWriteDeadline(deadline)
	r.SetReadDeadline(deadline)
	werr := make(chan error, 1)
	var sent uint32
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		for off := int64(0); off < n; {
			k := min(int64(soakSize(rng)), n-off)
			p := src[off%int64(len(src)):]
			p = p[:min(int64(len(p)), k)]
			m, err := w.Write(p)
			crc.Write(p[:m])
			off += int64(m)
			if err != nil {
				werr <- fmt.Errorf("write at %d: %w", off, err)
				return
			}
		}
		sent = crc.Sum32()
		werr <- nil
	}()
	rng := rand.New(rand.NewPCG(seed, 2))
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	buf := make([]byte, 1<<18)
	for off := int64(0); off < n; {
		k := min(int64(soakSize(rng)), n-off)
		m, err := r.Read(buf[:k])
		got := buf[:m]
		crc.Write(got)
		for len(got) > 0 {
			want := src[off%int64(len(src)):]
			want = want[:min(len(want), len(got))]
			if !bytes.Equal(got[:len(want)], want) {
				return fmt.Errorf("stream corrupt in the %d bytes at offset %d", len(want), off)
			}
			got = got[len(want):]
			off += int64(len(want))
		}
		if err == io.EOF {
			return fmt.Errorf("EOF after %d of %d bytes", off, n)
		}
		if err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
	}
	if err := <-werr; err != nil {
		return err
	}
	if got := crc.Sum32(); got != sent {
		return fmt.Errorf("CRC-32C received %#x, sent %#x", got, sent)
	}
	return nil
}
