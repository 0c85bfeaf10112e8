package vchan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vchan-go/vchan/internal/ring"
)

// fuzzOpBound is how long any single Read, Write or Flush of the victim may
// take, whatever the hostile peer does; its deadlines are at most 20 ms.
const fuzzOpBound = 2 * time.Second

// fuzzDeadlines are the victim's per-operation deadlines, chosen by the
// script: already passed, and short ones.
var fuzzDeadlines = [4]time.Duration{-time.Millisecond, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond}

// fuzzMaxOps bounds the operations of one iteration, so that blocking
// operations (each up to its deadline) keep an iteration short.
const fuzzMaxOps = 24

// FuzzConnHostilePeer drives a Conn (the victim) while the other end of the
// vchan (the hostile peer) rewrites any header byte of the shared page —
// indices, orders, live and notify bytes, the grant list — between the
// victim's operations and, from a second goroutine, during them, and
// notifies the event channel spuriously. Whatever it does, the victim must
// not panic; every Read, Write and Flush must return within fuzzOpBound; Read
// never reports more than its buffer, Write never more than it was given;
// every error other than a bare io.EOF is a *net.OpError that is exactly one
// of: a protocol violation (ErrProtocol, not a timeout), a timeout
// (os.ErrDeadlineExceeded with Timeout() true), or EPIPE (a write to a peer
// whose live byte says closed). A protocol violation is sticky.
//
// Script: mode picks the victim (server or client) and the ring sizes; then
// each 3-byte op (code, a, b) is one step (see the switch below).
func FuzzConnHostilePeer(f *testing.F) {
	f.Add(byte(0), []byte{2, 0, 10, 7, 5, 9, 2, 3, 50, 1, 1, 0xff, 2, 1, 1})
	f.Add(byte(1), []byte{3, 3, 200, 8, 10, 10, 3, 2, 100, 6, 40, 3, 4, 3, 0})
	f.Add(byte(2), []byte{6, 9, 3, 6, 7, 2, 6, 1, 4, 5, 0, 0, 2, 2, 2})
	f.Add(byte(3), []byte{0, 20, 7, 3, 3, 3, 0, 21, 0, 2, 3, 3, 4, 3, 3})
	f.Add(byte(4), []byte{1, 1, 0xff, 2, 3, 16, 1, 6, 0x80, 3, 3, 16, 4, 1, 1})
	f.Add(byte(5), []byte{9, 0, 0, 2, 3, 8, 3, 3, 8, 9, 1, 1, 2, 3, 8})
	f.Add(byte(6), []byte{7, 255, 255, 8, 255, 255, 10, 3, 17, 11, 2, 0, 6, 0, 0})
	f.Add(byte(7), []byte{0, 22, 3, 0, 23, 3, 10, 3, 3, 5, 5, 5, 6, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, mode byte, script []byte) {
		fuzzConn(t, mode, script)
	})
}

// fuzzSizes are the ring sizes (server read, server write) the fuzzer picks
// from: in-page 1 KiB/2 KiB, 2 KiB/1 KiB, one page each, and mixed.
var fuzzSizes = [4][2]int{{1, 1}, {2048, 1024}, {4096, 4096}, {8192, 1024}}

func fuzzConn(t *testing.T, mode byte, script []byte) {
	_, srv, cli := connPair(t, fuzzSizes[mode>>1%4][0], fuzzSizes[mode>>1%4][1])
	victim, hostile := srv, cli
	if mode&1 != 0 {
		victim, hostile = cli, srv
	}
	page := hostile.page()
	word := func(off int) *uint32 { return (*uint32)(unsafe.Pointer(&page[off])) }
	buf := make([]byte, 16<<10)
	var broken error // the first protocol error: later ones must follow
	var hmu sync.Mutex
	// hostileData moves legitimate data on the hostile side (its own
	// endpoint, serialised here), so the victim also sees real progress.
	hostileData := func(write bool, n int) {
		hmu.Lock()
		defer hmu.Unlock()
		var notify bool
		if write {
			_, notify, _ = hostile.ep.Write(buf[:n])
		} else {
			_, notify, _ = hostile.ep.Read(buf[:n])
		}
		if notify {
			hostile.ch.Notify()
		}
	}
	// scribble starts a goroutine that rewrites header words with atomics
	// (the victim reads them with atomics) until stopped.
	scribble := func(seed uint64) (stop func()) {
		var quit atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; !quit.Load(); i++ {
				off := 4 * rng.IntN(8) // indices, orders, live/notify word, two grant refs
				switch rng.IntN(4) {
				case 0:
					atomic.StoreUint32(word(off), rng.Uint32())
				case 1: // a plausible index: near its current value
					atomic.AddUint32(word(off&^16), uint32(rng.IntN(5000)))
				case 2: // set or clear notify request bits
					atomic.OrUint32(word(20), rng.Uint32()&0x03030000)
				case 3:
					hostile.ch.Notify()
				}
				if i%8 == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
		return func() { quit.Store(true); <-done }
	}

	ops := 0
	for i := 0; i+2 < len(script) && ops < fuzzMaxOps; i += 3 {
		code, a, b := script[i], int(script[i+1]), int(script[i+2])
		dl := fuzzDeadlines[a%4]
		switch code % 12 {
		case 0: // the peer writes one header byte (or a grant list byte)
			page[a%(ring.HeaderSize+8)] = byte(b)
		case 1: // the peer writes a 32-bit index: near its value, or anything
			off := 4 * (a % 4)
			v := binary.NativeEndian.Uint32(page[off:])
			switch b % 4 {
			case 0:
				v += uint32(b) * 97
			case 1:
				v -= uint32(a) + 1
			case 2:
				v = 0xffffffff - uint32(a)
			case 3:
				v = uint32(a)<<24 | uint32(b)
			}
			binary.NativeEndian.PutUint32(page[off:], v)
		case 2, 3, 4: // the victim reads, writes or flushes
			ops++
			broken = fuzzVictimOp(t, victim, int(code%12)-2, dl, buf[:(a*b+1)%len(buf)], broken)
		case 5: // a spurious notification
			hostile.ch.Notify()
		case 6, 7: // an operation while a goroutine scribbles on the header
			ops++
			stop := scribble(uint64(a)<<8 | uint64(b))
			broken = fuzzVictimOp(t, victim, b%3, dl, buf[:(a*b+1)%len(buf)], broken)
			stop()
		case 8: // the peer produces data legitimately
			hostileData(true, (a*b+1)%len(buf))
		case 9: // the peer sets its live byte: 0 closed, 1 open, or garbage
			off := ring.OffCliLive
			if hostile == srv {
				off = ring.OffSrvLive
			}
			page[off] = byte(b % 4)
		case 10: // the peer consumes data legitimately
			hostileData(false, (a*b+1)%len(buf))
		case 11: // a read and a write at once, peer scribbling or not
			ops++
			var stop func()
			if b&1 != 0 {
				stop = scribble(uint64(a))
			}
			var wg sync.WaitGroup
			var rerr, werr error
			wg.Add(2)
			rbuf := make([]byte, a+1)
			go func() { defer wg.Done(); rerr = fuzzTimedOp(t, victim, 0, dl, rbuf) }()
			go func() { defer wg.Done(); werr = fuzzTimedOp(t, victim, 1, dl, buf[:(a*b+1)%len(buf)]) }()
			wg.Wait()
			if stop != nil {
				stop()
			}
			if t.Failed() {
				t.FailNow()
			}
			// Within the pair the two are not ordered: one may fail
			// and the other succeed. A protocol error from before must stick.
			prev := broken
			for i, err := range []error{rerr, werr} {
				if prev != nil && !errors.Is(err, ErrProtocol) {
					t.Fatalf("concurrent %s after the protocol error %q = %v; want the sticky protocol error", opName(i), prev, err)
				}
				if broken == nil && errors.Is(err, ErrProtocol) {
					broken = err
				}
			}
		}
	}
	// The victim still closes promptly.
	start := time.Now()
	if err := victim.Close(); err != nil && !errors.Is(err, ErrProtocol) {
		t.Errorf("Close = %v", err)
	}
	if d := time.Since(start); d > fuzzOpBound {
		t.Errorf("Close took %v", d)
	}
}

// fuzzVictimOp runs one victim operation (0 read, 1 write, 2 flush) and
// checks that a protocol error, once seen, sticks. It returns the first
// protocol error seen so far.
func fuzzVictimOp(t *testing.T, c *Conn, op int, dl time.Duration, buf []byte, broken error) error {
	t.Helper()
	err := fuzzTimedOp(t, c, op, dl, buf)
	if t.Failed() {
		t.FailNow()
	}
	if broken != nil && !errors.Is(err, ErrProtocol) {
		t.Fatalf("%s after the protocol error %q = %v; want the sticky protocol error", opName(op), broken, err)
	}
	if broken == nil && errors.Is(err, ErrProtocol) {
		return err
	}
	return broken
}

func opName(op int) string { return [3]string{"Read", "Write", "Flush"}[op] }

// fuzzTimedOp runs one operation with deadline dl from now and checks the
// bound on its duration and the shape of its result. It reports with
// t.Errorf, so that it may run on any goroutine; the caller stops the test.
func fuzzTimedOp(t *testing.T, c *Conn, op int, dl time.Duration, buf []byte) error {
	t.Helper()
	deadline := time.Now().Add(dl)
	var set func(time.Time) error
	switch op {
	case 0:
		set = c.SetReadDeadline
	default:
		set = c.SetWriteDeadline
	}
	if err := set(deadline); err != nil {
		t.Errorf("set deadline: %v", err)
		return err
	}
	start := time.Now()
	var n int
	var err error
	switch op {
	case 0:
		n, err = c.Read(buf)
	case 1:
		n, err = c.Write(buf)
	case 2:
		err = c.Flush()
	}
	took := time.Since(start)
	if took > fuzzOpBound {
		t.Errorf("%s with a %v deadline took %v (bound %v)", opName(op), dl, took, fuzzOpBound)
	}
	if n < 0 || n > len(buf) {
		t.Errorf("%s of %d bytes returned n = %d", opName(op), len(buf), n)
	}
	if msg := checkConnError(op, n, len(buf), err); msg != "" {
		t.Errorf("%s (deadline %v, %d bytes) = %d, %v: %s", opName(op), dl, len(buf), n, err, msg)
	}
	return err
}

// checkConnError returns what is wrong with the result of a Read (op 0),
// Write (1) or Flush (2) of a Conn facing a hostile peer, or "".
func checkConnError(op, n, size int, err error) string {
	switch {
	case err == nil:
		if op == 1 && n != size {
			return "a short write without an error"
		}
		if op == 0 && n == 0 && size > 0 {
			return "a read of nothing without an error"
		}
		return ""
	case err == io.EOF:
		if op != 0 || n != 0 {
			return "io.EOF from something other than an empty Read"
		}
		return ""
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Net != Network {
		return fmt.Sprintf("error %T is not a vchan *net.OpError", err)
	}
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	kinds := 0
	for _, k := range []bool{errors.Is(err, ErrProtocol), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.EPIPE)} {
		if k {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		return "not exactly one of ErrProtocol, os.ErrDeadlineExceeded, EPIPE"
	case errors.Is(err, ErrProtocol) && timeout:
		return "a protocol error that claims to be a timeout"
	case errors.Is(err, os.ErrDeadlineExceeded) && !timeout:
		return "a deadline error whose Timeout() is false"
	case errors.Is(err, syscall.EPIPE) && op == 0:
		return "EPIPE from a Read"
	case op == 0 && n != 0:
		return "a Read that returned data and an error"
	}
	return ""
}

// FuzzParseDecimal checks the parser of untrusted xenstore numbers
// (ring-ref, event-channel, domid) against an independent statement of the
// rule: 1 to 10 ASCII digits, nothing else, value ≤ max.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "1", "65535", "65536", "4294967295", "4294967296", "9999999999",
		"00000000001", "-1", "+1", " 1", "1 ", "1\x00", "0x10", "١", "", "12a", "007"} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, v []byte, which uint8) {
		max := [4]uint64{0xffff, 1<<32 - 1, 9999999999, 0}[which%4]
		got, err := parseDecimal(v, max)

		want, ok := uint64(0), len(v) >= 1 && len(v) <= 10
		for _, c := range v {
			ok = ok && '0' <= c && c <= '9'
		}
		if ok {
			var perr error
			want, perr = strconv.ParseUint(string(v), 10, 64)
			ok = perr == nil && want <= max
		}
		switch {
		case ok && (err != nil || got != want):
			t.Fatalf("parseDecimal(%q, %d) = %d, %v; want %d", v, max, got, err, want)
		case !ok && err == nil:
			t.Fatalf("parseDecimal(%q, %d) = %d, accepted; want an error", v, max, got)
		case !ok && !errors.Is(err, ErrProtocol):
			t.Fatalf("parseDecimal(%q, %d) error %v does not wrap ErrProtocol", v, max, err)
		case !ok && got != 0:
			t.Fatalf("parseDecimal(%q, %d) = %d with an error", v, max, got)
		}
	})
}
