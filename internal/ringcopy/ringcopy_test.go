package ringcopy

import (
	"bytes"
	"testing"
)

func TestCopy(t *testing.T) {
	src := make([]byte, 70000)
	for i := range src {
		src[i] = byte(i*7 + i>>8)
	}
	for _, c := range []struct{ dst, src int }{
		{0, 0}, {1, 1}, {5, 3}, {3, 5}, {minString - 1, minString - 1}, {minString, minString},
		{minString + 1, 4 * minString}, {16 << 10, 16 << 10}, {65536, 70000}, {70000, 65535},
	} {
		for _, off := range []int{0, 1, 7} { // unaligned ends too
			dst := make([]byte, c.dst+off+8)
			for i := range dst {
				dst[i] = 0xee
			}
			s := src[off : off+min(c.src, len(src)-off)]
			want := min(c.dst, len(s))
			if n := Copy(dst[off:off+c.dst], s); n != want {
				t.Fatalf("Copy(%d bytes, %d bytes) = %d, want %d", c.dst, len(s), n, want)
			}
			if !bytes.Equal(dst[off:off+want], s[:want]) {
				t.Fatalf("Copy(%d bytes, %d bytes) at offset %d: wrong bytes", c.dst, len(s), off)
			}
			for i, b := range append(dst[:off:off], dst[off+want:]...) {
				if b != 0xee {
					t.Fatalf("Copy(%d bytes, %d bytes) at offset %d wrote outside dst[:%d] (byte %d)", c.dst, len(s), off, want, i)
				}
			}
		}
	}
}

func TestCopyDoesNotAllocate(t *testing.T) {
	dst, src := make([]byte, 64<<10), make([]byte, 64<<10)
	if n := testing.AllocsPerRun(100, func() { Copy(dst, src) }); n != 0 {
		t.Errorf("%v allocations per Copy", n)
	}
}

// BenchmarkCopy is one core's copy speed, in cache: the string move must
// not be slower than copy where no other core is involved.
func BenchmarkCopy(b *testing.B) {
	dst, src := make([]byte, 16<<10), make([]byte, 16<<10)
	b.Run("ringcopy", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			Copy(dst, src)
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			copy(dst, src)
		}
	})
}
