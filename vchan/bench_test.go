//go:build linux

package vchan

import (
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Benchmarks: vchan on the in-process simulated host beside the same work
// over a unix socket pair and a plain memmove, in the same run, so that the
// ratios mean something on any machine. Run:
//
//	go test -run '^$' -bench . -benchmem ./vchan/
//
// These are in-process figures; scripts/bench.sh measures across processes,
// against C libxenvchan (bench/vchanbench).

var (
	benchWrites = []int{64, 4 << 10, 64 << 10}
	benchRings  = []struct {
		order       int
		read, write int // server minimum sizes; the server writes
	}{
		{11, 0, 0}, // the in-page default: the server's write ring is 2 KiB
		{16, 1 << 16, 1 << 16},
		{20, 1 << 20, 1 << 20},
	}
)

// bulk streams b.N writes of size bytes from w to r and reads them all.
func bulk(b *testing.B, w io.Writer, r io.Reader, size int) {
	b.Helper()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	total := int64(b.N) * int64(size)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for range b.N {
			if _, err := w.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	buf := make([]byte, 64<<10)
	var got int64
	for got < total {
		n, err := r.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		got += int64(n)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// unixPair returns a connected pair of unix stream sockets.
func unixPair(b *testing.B) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

func BenchmarkBulk(b *testing.B) {
	for _, rg := range benchRings {
		for _, size := range benchWrites {
			b.Run(fmt.Sprintf("vchan/order%d/write%d", rg.order, size), func(b *testing.B) {
				_, srv, cli := connPair(b, rg.read, rg.write)
				bulk(b, srv, cli, size)
			})
		}
	}
	// With the spin that Xen and the cross-process simulator default to
	// (the in-process simulator defaults to none: its wake-ups are cheap).
	b.Run("vchan-spin/order16/write65536", func(b *testing.B) {
		_, srv, cli := connPair(b, 1<<16, 1<<16)
		srv.SetSpinWait(DefaultSpinWait)
		cli.SetSpinWait(DefaultSpinWait)
		bulk(b, srv, cli, 64<<10)
	})
	for _, size := range benchWrites {
		b.Run(fmt.Sprintf("unix/write%d", size), func(b *testing.B) {
			a, c := unixPair(b)
			bulk(b, a, c, size)
		})
	}
}

// BenchmarkChunk compares copy chunk sizes for 64 KiB writes through 64 KiB
// rings in the same run: whole (one copy per side, one after the other)
// against the default chunking.
func BenchmarkChunk(b *testing.B) {
	for _, chunk := range []int{1 << 30, 32 << 10, 16 << 10, 8 << 10} {
		b.Run(fmt.Sprintf("chunk%d", min(chunk, 1<<20)), func(b *testing.B) {
			defer func(old int) { copyChunk = old }(copyChunk)
			copyChunk = chunk
			_, srv, cli := connPair(b, 1<<16, 1<<16)
			bulk(b, srv, cli, 64<<10)
		})
	}
}

// BenchmarkMemmove is the copy bound: a vchan copies each byte twice (into
// the ring, out of it), on two cores at once.
func BenchmarkMemmove(b *testing.B) {
	for _, size := range benchWrites {
		b.Run(fmt.Sprintf("size%d", size), func(b *testing.B) {
			src, dst := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

// pingPong bounces one byte between a and c b.N times.
func pingPong(b *testing.B, a, c io.ReadWriter) {
	b.ReportAllocs()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 1)
		for range b.N {
			if _, err := io.ReadFull(c, buf); err != nil {
				errc <- err
				return
			}
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	buf := make([]byte, 1)
	for range b.N {
		if _, err := a.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(a, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkPingPong(b *testing.B) {
	b.Run("vchan", func(b *testing.B) {
		_, srv, cli := connPair(b, 1, 1)
		pingPong(b, srv, cli)
	})
	b.Run("vchan-spin", func(b *testing.B) {
		_, srv, cli := connPair(b, 1, 1)
		srv.SetSpinWait(DefaultSpinWait)
		cli.SetSpinWait(DefaultSpinWait)
		pingPong(b, srv, cli)
	})
	b.Run("unix", func(b *testing.B) {
		a, c := unixPair(b)
		pingPong(b, a, c)
	})
}
