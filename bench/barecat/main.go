//go:build linux

// Command barecat is the ceiling of scripts/bench-cat.sh's pipe: stdin of
// one process to stdout of another through a ring of shared memory, with
// the copies vchan-cat makes (64 KiB reads of stdin, copied into the ring
// in 16 KiB chunks; 16 KiB chunks out of the ring into a 64 KiB buffer,
// written to stdout) and nothing else: no protocol, no validation, no
// simulated host. A side that finds the ring full or empty spins on the
// other's index for the library's default spin wait, then sleeps on a
// futex on that index, which the other side wakes when it sees the flag
// the sleeper set first. That is the cheapest wake-up two processes can
// have; vchan-cat's go through event channels (the vchan-simd daemon on the
// simulator, Xen on Xen).
//
//	barecat [-ring BYTES] recv PATH >out   # creates PATH (e.g. in /dev/shm)
//	barecat [-ring BYTES] send PATH <in    # waits for PATH, sends stdin, ends
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/ringcopy"
)

const (
	chunk   = 16 << 10               // vchan/conn.go's copyChunk
	bufSize = 64 << 10               // vchan-cat's buffer
	spin    = 200 * time.Microsecond // vchan.DefaultSpinWait

	// The first page: the indices share a cache line, as a vchan ring's
	// do; the sleep flags and the state have lines of their own.
	header                = 4096
	offCons, offProd      = 0, 4
	offReaderWaits        = 64
	offWriterWaits        = 128
	offState              = 192
	stateReady, stateDone = 1, 2
	futexWait, futexWake  = 0, 1 // shared, not private: two processes
	// A sleep ends after this at the latest. Only the end of the input
	// can need it: "done" moves no index, so a reader that set its flag
	// just before it may sleep once until then.
	futexTimeout = 10 * time.Millisecond
)

type ring struct {
	mem                      []byte
	data                     []byte
	mask                     uint32
	cons, prod               *uint32
	readerWaits, writerWaits *uint32
	state                    *uint32
}

func word(mem []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }

func mapRing(f *os.File, size int) (*ring, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, header+size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &ring{mem: mem, data: mem[header:], mask: uint32(size - 1),
		cons: word(mem, offCons), prod: word(mem, offProd),
		readerWaits: word(mem, offReaderWaits), writerWaits: word(mem, offWriterWaits),
		state: word(mem, offState)}, nil
}

func futex(addr *uint32, op int, val uint32, timeout *unix.Timespec) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), uintptr(op), uintptr(val), uintptr(unsafe.Pointer(timeout)), 0, 0)
}

// await returns once *index differs from old: a spin, then futex sleeps
// announced in *flag (set before the last look, so that the other side,
// which moves the index before it reads the flag, cannot miss it).
func await(index *uint32, old uint32, flag *uint32, done func() bool) {
	deadline := time.Now().Add(spin)
	for i := 1; ; i++ {
		if atomic.LoadUint32(index) != old || done() {
			return
		}
		if i%64 == 0 && time.Now().After(deadline) {
			break
		}
	}
	ts := unix.NsecToTimespec(int64(futexTimeout))
	for {
		atomic.SwapUint32(flag, 1)
		if atomic.LoadUint32(index) != old || done() {
			atomic.StoreUint32(flag, 0)
			return
		}
		futex(index, futexWait, old, &ts)
	}
}

// publish stores v in *index with a full barrier, then wakes the other side
// if it announced a sleep.
func publish(index *uint32, v uint32, flag *uint32) {
	atomic.SwapUint32(index, v)
	if atomic.LoadUint32(flag) != 0 {
		atomic.StoreUint32(flag, 0)
		futex(index, futexWake, 1, nil)
	}
}

func (r *ring) send(in io.Reader) error {
	buf := make([]byte, bufSize)
	size := uint32(len(r.data))
	prod := atomic.LoadUint32(r.prod)
	never := func() bool { return false }
	for {
		n, err := in.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			cons := atomic.LoadUint32(r.cons)
			if prod-cons == size {
				await(r.cons, cons, r.writerWaits, never)
				continue
			}
			m := min(int(size-(prod-cons)), len(p), chunk)
			off := prod & r.mask
			if c := ringcopy.Copy(r.data[off:], p[:m]); c < m {
				ringcopy.Copy(r.data, p[c:m])
			}
			prod += uint32(m)
			publish(r.prod, prod, r.readerWaits)
			p = p[m:]
		}
		if err == io.EOF {
			atomic.StoreUint32(r.state, stateDone)
			publish(r.prod, prod, r.readerWaits)
			futex(r.prod, futexWake, 1, nil)
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *ring) recv(out io.Writer) error {
	buf := make([]byte, bufSize)
	cons := atomic.LoadUint32(r.cons)
	done := func() bool { return atomic.LoadUint32(r.state) == stateDone }
	for {
		k := 0
		for k < len(buf) {
			prod := atomic.LoadUint32(r.prod)
			if prod == cons {
				if k > 0 {
					break
				}
				if done() && atomic.LoadUint32(r.prod) == cons {
					return nil
				}
				await(r.prod, prod, r.readerWaits, done)
				continue
			}
			m := min(int(prod-cons), len(buf)-k, chunk)
			off := cons & r.mask
			if c := ringcopy.Copy(buf[k:k+m], r.data[off:]); c < m {
				ringcopy.Copy(buf[k+c:k+m], r.data)
			}
			cons += uint32(m)
			publish(r.cons, cons, r.writerWaits)
			k += m
		}
		if _, err := out.Write(buf[:k]); err != nil {
			return err
		}
	}
}

func run() error {
	ringBytes := flag.Int("ring", 64<<10, "ring bytes (a power of two)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: barecat [-ring BYTES] recv|send PATH")
		flag.PrintDefaults()
	}
	flag.Parse()
	size := *ringBytes
	if flag.NArg() != 2 || size < chunk || size > 1<<30 || size&(size-1) != 0 {
		flag.Usage()
		os.Exit(2)
	}
	mode, path := flag.Arg(0), flag.Arg(1)
	switch mode {
	case "recv":
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer os.Remove(path)
		if err := f.Truncate(int64(header + size)); err != nil {
			return err
		}
		r, err := mapRing(f, size)
		if err != nil {
			return err
		}
		atomic.StoreUint32(r.state, stateReady)
		return r.recv(os.Stdout)
	case "send":
		for i := 0; ; i++ {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err == nil {
				if st, err := f.Stat(); err == nil && st.Size() == int64(header+size) {
					r, err := mapRing(f, size)
					if err != nil {
						return err
					}
					if atomic.LoadUint32(r.state) == stateReady {
						return r.send(os.Stdin)
					}
					unix.Munmap(r.mem)
				}
				f.Close()
			}
			if i == 500 {
				return fmt.Errorf("no ring of %d bytes made ready at %s by barecat recv", size, path)
			}
			time.Sleep(10 * time.Millisecond)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "barecat:", err)
		os.Exit(1)
	}
}
