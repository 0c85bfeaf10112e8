//go:build linux

package main

import (
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/ringcopy"
)

// bareRing is the reference for what a ring of shared memory can carry on
// this machine, without vchan: one page for the two indices (at the offsets
// of the left ring's cons and prod in a vchan page, so they share a cache
// line as there) and a ring of mapped shared memory, a writer and a reader
// thread copying 64 KiB writes and reads in 16 KiB chunks, publishing each
// chunk with an atomic swap (a full barrier, as a Conn does), spinning on
// each other's index without a pause. No validation, no notify bits, no
// events, no second process: everything a Conn adds is missing, only the
// copies and the cache-line traffic between the two cores remain.
type bareRing struct {
	mem        []byte
	cons, prod *uint32
	data       []byte
	mask       uint32
}

const bareChunk = 16 << 10 // vchan/conn.go's copyChunk

func newBareRing(size int) (*bareRing, error) {
	mem, err := unix.Mmap(-1, 0, 4096+size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	return &bareRing{mem: mem,
		cons: (*uint32)(unsafe.Pointer(&mem[0])), prod: (*uint32)(unsafe.Pointer(&mem[4])),
		data: mem[4096:], mask: uint32(size - 1)}, nil
}

func (r *bareRing) close() { _ = unix.Munmap(r.mem) }

// run moves n bytes through the ring and returns the time it took.
func (r *bareRing) run(n int64) time.Duration {
	done := make(chan struct{})
	var ready atomic.Bool
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		ready.Store(true)
		buf := make([]byte, 64<<10)
		pos := atomic.LoadUint32(r.cons)
		for got := int64(0); got < n; {
			k := 0
			for k < len(buf) && got+int64(k) < n { // one Read: chunks while data is there
				avail := int(atomic.LoadUint32(r.prod) - pos)
				if avail == 0 {
					if k > 0 {
						break
					}
					continue
				}
				m := min(avail, len(buf)-k, bareChunk)
				off := pos & r.mask
				if c := ringcopy.Copy(buf[k:k+m], r.data[off:]); c < m {
					ringcopy.Copy(buf[k+c:k+m], r.data)
				}
				pos += uint32(m)
				atomic.SwapUint32(r.cons, pos)
				k += m
			}
			got += int64(k)
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for !ready.Load() {
		// The clock starts once both threads run, as the peers of a pair
		// are connected and waiting before their first command.
	}
	start := time.Now()
	buf := make([]byte, 64<<10)
	pos := atomic.LoadUint32(r.prod)
	for sent := int64(0); sent < n; { // 64 KiB Writes in chunks, as a Conn
		p := buf[:min(int64(len(buf)), n-sent)]
		for len(p) > 0 {
			free := len(r.data) - int(pos-atomic.LoadUint32(r.cons))
			if free == 0 {
				continue
			}
			m := min(free, len(p), bareChunk)
			off := pos & r.mask
			if c := ringcopy.Copy(r.data[off:], p[:m]); c < m {
				ringcopy.Copy(r.data, p[c:m])
			}
			pos += uint32(m)
			atomic.SwapUint32(r.prod, pos)
			p = p[m:]
			sent += int64(m)
		}
	}
	<-done
	return time.Since(start)
}
