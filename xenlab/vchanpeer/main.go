// Command vchanpeer is the Go side of the lab's cross-domain and interop
// tests, with the command line of the C peer vchan-ref (xenlab/guest):
//
//	vchanpeer [-wait-close] server|client PEER-DOMID PATH EXPECT-BYTES [RING-BYTES]
//
// It sends its stdin over a vchan on the real Xen host and writes what it
// receives to stdout, exiting 0 once stdin is at EOF, all of it was sent and
// EXPECT-BYTES were received (-1: until the peer closes). A server asks for
// RING-BYTES (default 4096) each way.
//
// With -wait-close it sends nothing and reads until the connection fails,
// then prints "closed-at <unix ns> <error>" on stderr: the lab kills the
// peer and measures how long the survivor takes to notice.
//
// With -ping N it measures the 1-byte round trip instead: the client sends
// one byte and waits for it to come back, N times, and prints
// "rtt-ns <mean>" on stderr; the server echoes N bytes one at a time.
// EXPECT-BYTES is ignored then. -clock N takes N samples of the peer's wall
// clock the same way and prints the offset; -kill PID kills a process and
// prints when, and when it had exited (the lab's cross-domain kill test,
// whose two domains' wall clocks differ). -events N times N round trips of a bare event channel
// between the two domains, with no ring (events.go): the floor under the
// round trip with spinning off.
//
// A receiver prints "recv NS:BYTES:READS" on stderr: the bytes that arrived
// after its first read, the nanoseconds they took and the reads that
// returned them (the lab's data-phase
// throughput; vchan-ref prints the same). Run through a link named
// vchanpeer-nospin, it turns spinning off (-spin=0) unless -spin is given;
// through a link named vchanpeer-p2, it runs with GOMAXPROCS=2 even on one
// CPU: the lab's shell passes commands as single words.
//
// With -cpuprofile FILE it writes a CPU profile (runtime/pprof, sampled at
// 1000 Hz) of the transfer or the round trips, from the connection on to
// the close: where Go's time goes on real Xen (the lab's item n). With
// -trace FILE it writes an execution trace (runtime/trace) of the same
// span: which thread runs, blocks and wakes when. With -dd it copies stdin
// to stdout as coreutils dd bs=64k does, no vchan: what the Go runtime's
// own system calls cost on the machine (the lab's item n.dd).
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
	"github.com/vchan-go/vchan/vchan"
	"github.com/vchan-go/vchan/xenlab/stalldiag"
)

func main() {
	waitClose := flag.Bool("wait-close", false, "send nothing; read until the connection fails and print when")
	readDeadline := flag.Duration("read-deadline", 0, "with -wait-close: a read deadline this long after connecting (0: none)")
	pings := flag.Int("ping", 0, "echo (server) or time (client) this many 1-byte round trips")
	spin := flag.Duration("spin", -1, "Conn.SetSpinWait (negative: the library's default)")
	clock := flag.Int("clock", 0, "serve (server) or take (client) this many samples of the peer's wall clock")
	kill := flag.Int("kill", 0, "kill -9 this `pid`, wait until it has exited, print \"killed-at <unix ns> dead-at <unix ns>\" and exit")
	dialTimeout := flag.Duration("dial-timeout", time.Minute, "how long a client waits for the server")
	dd := flag.Bool("dd", false, "copy stdin to stdout in 64 KiB reads and writes, no vchan, and print \"dd-ns <ns> <bytes>\"")
	copyMiB := flag.Int("copy", 0, "copy this many MiB in memory, in the ring's 16 KiB chunks, and print \"copy-mbs <MB/s>\"")
	scenario := flag.Int("close-after-write", 0, "run the close-after-write scenario this many times (see scenario.go)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the data phase to this `file`")
	execTrace := flag.String("trace", "", "write an execution trace (runtime/trace) of the data phase to this `file`")
	events := flag.Int("events", 0, "time this many round trips of a bare event channel, no ring: -events N server|client PEER-DOMID PATH (see events.go)")
	statusProbe := flag.Bool("status-check", false, "print \"status-check ok\" if this domain may ask Xen for its ports' status, else \"status-check unavailable: <why>\"")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: vchanpeer [-wait-close] server|client PEER-DOMID PATH EXPECT-BYTES [RING-BYTES]")
		fmt.Fprintln(os.Stderr, "       vchanpeer [-dial-timeout D] relay PEER-DOMID PATH-A PATH-B [RING-BYTES]")
		fmt.Fprintln(os.Stderr, "       vchanpeer -close-after-write N send|recv server|client PEER-DOMID PATH-PREFIX [RING-BYTES]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *spin < 0 && filepath.Base(os.Args[0]) == "vchanpeer-nospin" {
		*spin = 0
	}
	if filepath.Base(os.Args[0]) == "vchanpeer-p2" {
		runtime.GOMAXPROCS(2) // also in a 1-vCPU domU: a diagnostic of the lab's perf plan
	}
	if *statusProbe {
		if err := evtchn.StatusCheck(); err != nil {
			fmt.Printf("status-check unavailable: %v\n", err)
		} else {
			fmt.Println("status-check ok")
		}
		return
	}
	if *dd {
		start := time.Now()
		n, err := io.CopyBuffer(onlyWriter{os.Stdout}, onlyReader{os.Stdin}, make([]byte, copyBuf))
		if err != nil {
			fatal("dd: %v", err)
		}
		fmt.Fprintf(os.Stderr, "dd-ns %d %d\n", time.Since(start).Nanoseconds(), n)
		return
	}
	if *copyMiB > 0 {
		fmt.Fprintf(os.Stderr, "copy-mbs %.1f\n", copySpeed(*copyMiB))
		return
	}
	if *kill > 0 {
		// The kill time is taken right before the signal: a shell's date
		// would be a process start earlier, and busybox's has no
		// nanoseconds. The death time is when the process had exited.
		killed, dead, err := killAndWait(*kill)
		if err != nil {
			fatal("kill %d: %v", *kill, err)
		}
		fmt.Printf("killed-at %d dead-at %d\n", killed, dead)
		return
	}
	args := flag.Args()
	if *events > 0 {
		if len(args) != 3 || (args[0] != "server" && args[0] != "client") {
			fatal("usage: vchanpeer -events N server|client PEER-DOMID PATH")
		}
		peer, err := strconv.ParseUint(args[1], 10, 16)
		if err != nil {
			fatal("peer domid: %v", err)
		}
		if err := eventRoundTrips(*events, args[0], uint16(peer), args[2], *dialTimeout); err != nil {
			fatal("events: %v", err)
		}
		return
	}
	if *scenario > 0 {
		if err := closeAfterWrite(*scenario, args, *dialTimeout); err != nil {
			fatal("close-after-write: %v", err)
		}
		fmt.Fprintf(os.Stderr, "scenario ok %d\n", *scenario)
		return
	}
	if len(args) >= 4 && len(args) <= 5 && args[0] == "relay" {
		if err := relay(args[1:], *dialTimeout); err != nil {
			fatal("relay: %v", err)
		}
		return
	}
	if len(args) < 4 || len(args) > 5 || (args[0] != "server" && args[0] != "client") {
		flag.Usage()
		os.Exit(2)
	}
	peer, err := strconv.ParseUint(args[1], 10, 16)
	if err != nil {
		fatal("peer domid: %v", err)
	}
	expect, err := strconv.ParseInt(args[3], 10, 64)
	if err != nil {
		fatal("expect bytes: %v", err)
	}
	ring := 4096
	if len(args) == 5 {
		if ring, err = strconv.Atoi(args[4]); err != nil {
			fatal("ring bytes: %v", err)
		}
	}
	cfg := &vchan.Config{Host: vchan.XenHost(), ReadBufferSize: ring, WriteBufferSize: ring, WaitForServer: true}

	var c *vchan.Conn
	if args[0] == "server" {
		ln, err := vchan.Listen(uint16(peer), args[2], cfg)
		if err != nil {
			fatal("listen: %v", err)
		}
		c, err = ln.AcceptVchan()
		if err != nil {
			fatal("accept: %v", err)
		}
		if err := ln.Close(); err != nil {
			fatal("listener close: %v", err)
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), *dialTimeout)
		c, err = vchan.DialContext(ctx, uint16(peer), args[2], cfg)
		cancel()
		if err != nil {
			fatal("dial: %v", err)
		}
	}
	if *spin >= 0 {
		c.SetSpinWait(*spin)
	}
	r, w := c.RingSizes()
	fmt.Fprintf(os.Stderr, "vchanpeer: connected %s <-> %s rings read %d write %d\n", c.LocalAddr(), c.RemoteAddr(), r, w)
	stopProfile := startProfile(*cpuProfile, *execTrace)

	if *clock > 0 {
		if err := clockSamples(c, args[0] == "server", *clock); err != nil {
			fatal("clock: %v", err)
		}
		if err := c.Close(); err != nil {
			fatal("close: %v", err)
		}
		return
	}
	if *pings > 0 {
		if err := pingPong(c, args[0] == "server", *pings); err != nil {
			fatal("ping: %v", err)
		}
		if err := c.Close(); err != nil {
			fatal("close: %v", err)
		}
		stopProfile()
		return
	}
	if *waitClose {
		if *readDeadline > 0 {
			c.SetReadDeadline(time.Now().Add(*readDeadline))
		}
		_, err := io.Copy(io.Discard, c)
		fmt.Fprintf(os.Stderr, "closed-at %d %v\n", time.Now().UnixNano(), err)
		c.Close()
		return
	}

	sent := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(c, onlyReader{os.Stdin}, make([]byte, copyBuf))
		if err == nil {
			err = c.Flush()
		}
		sent <- err
	}()
	var got int64
	buf := make([]byte, copyBuf)
	in := &timedReader{r: c}
	out := onlyWriter{os.Stdout}
	if expect < 0 {
		got, err = io.CopyBuffer(out, in, buf)
	} else {
		got, err = io.CopyBuffer(out, io.LimitReader(in, expect), buf)
		if err == nil && got < expect {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		fatal("received %d of %d bytes: %v", got, expect, err)
	}
	if in.after > 0 {
		// The data phase, for the lab's throughput: the bytes after the
		// first read and the time they took, without process start-up
		// and connection set-up. vchan-ref prints the same.
		fmt.Fprintf(os.Stderr, "recv %d:%d:%d\n", (in.last - in.first).Nanoseconds(), in.after, in.reads)
	}
	if err := <-sent; err != nil && !(expect < 0 && errors.Is(err, io.EOF)) {
		fatal("send: %v", err)
	}
	if err := c.Close(); err != nil {
		fatal("close: %v", err)
	}
	stopProfile()
}

// pingPong echoes n single bytes (server) or times n round trips of one
// byte (client).
func pingPong(c *vchan.Conn, server bool, n int) error {
	b := make([]byte, 1)
	start := time.Now()
	for i := range n {
		if !server {
			b[0] = byte(i)
			if _, err := c.Write(b); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return fmt.Errorf("round trip %d: %w", i, err)
		}
		if server {
			if _, err := c.Write(b); err != nil {
				return err
			}
		} else if b[0] != byte(i) {
			return fmt.Errorf("round trip %d: got byte %d back", i, b[0])
		}
	}
	if !server {
		fmt.Fprintf(os.Stderr, "rtt-ns %d\n", time.Since(start).Nanoseconds()/int64(n))
	} else if err := c.Flush(); err != nil {
		return err
	}
	return nil
}

// relay joins pairs of vchans for nettest across domains
// (guesttest.TestConnAcrossDomains): again and again, it dials the peer's
// server at PATH-A, accepts the peer's next client at PATH-B (its own
// server, RING-BYTES each way), and copies between the two until either
// side ends, then closes both, so that a close travels on. It returns once
// no server appears at PATH-A, or no client at PATH-B, within dialTimeout
// (see acceptNext), after at least one pair.
func relay(args []string, dialTimeout time.Duration) error {
	peer, err := strconv.ParseUint(args[0], 10, 16)
	if err != nil {
		return fmt.Errorf("peer domid: %v", err)
	}
	ring := 4096
	if len(args) == 4 {
		if ring, err = strconv.Atoi(args[3]); err != nil {
			return fmt.Errorf("ring bytes: %v", err)
		}
	}
	host, err := vchan.DefaultHost() // Xen, or $VCHAN_HOST=sim:N to try it on the simulator
	if err != nil {
		return err
	}
	ln, err := vchan.Listen(uint16(peer), args[2], &vchan.Config{Host: host, ReadBufferSize: ring, WriteBufferSize: ring})
	if err != nil {
		return err
	}
	defer ln.Close()
	var live joined
	for pairs := 0; ; pairs++ {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		a, err := vchan.DialContext(ctx, uint16(peer), args[1], &vchan.Config{Host: host, WaitForServer: true})
		cancel()
		if err != nil {
			if pairs > 0 {
				fmt.Fprintf(os.Stderr, "vchanpeer: relay: %d pairs, done (%v)\n", pairs, err)
				return nil
			}
			return err
		}
		b, err := acceptNext(ln, &live, dialTimeout)
		if err != nil {
			a.Close()
			// The peer's listener offers its next ring at once, so the
			// relay may dial one that the peer never uses: the end too.
			if pairs > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				fmt.Fprintf(os.Stderr, "vchanpeer: relay: %d pairs, done (%v); %s\n", pairs, err, published(args[2]))
				if live.report() {
					stalled(filepath.Dir(args[2]) + "/stall")
				}
				return nil
			}
			return fmt.Errorf("pair %d: accept: %w", pairs, err)
		}
		go live.join(pairs+1, a, b)
	}
}

// acceptNext accepts the peer's next client within dialTimeout, a wait
// that starts over while a pair is still copying, up to busyLimit times:
// the peer's test opens its next pipe only once the one before is done, so
// a slow pipe (nettest's PingPong through one-vCPU domUs takes seconds) is
// not an absent peer. A pipe stuck for longer ends the relay with a report.
func acceptNext(ln *vchan.Listener, live *joined, dialTimeout time.Duration) (*vchan.Conn, error) {
	for waits := 1; ; waits++ {
		if err := ln.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
			return nil, err
		}
		b, err := ln.AcceptVchan()
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || waits == busyLimit || !live.busy() {
			return b, err
		}
	}
}

// busyLimit bounds acceptNext's waits while a pair is still copying.
const busyLimit = 5

// joined tracks the relay's pairs still copying: acceptNext waits longer
// while one is, and a relay that gives up says where each stands.
type joined struct {
	mu    sync.Mutex
	pairs map[int]*pair
}

type pair struct {
	a, b   *vchan.Conn
	start  time.Time
	abDone atomic.Bool // the copy a→b ended
	baDone atomic.Bool
}

// join copies both ways between a and b; when either direction ends it
// closes both (what was written is still delivered).
func (j *joined) join(n int, a, b *vchan.Conn) {
	p := &pair{a: a, b: b, start: time.Now()}
	j.mu.Lock()
	if j.pairs == nil {
		j.pairs = map[int]*pair{}
	}
	j.pairs[n] = p
	j.mu.Unlock()
	defer func() {
		j.mu.Lock()
		delete(j.pairs, n)
		j.mu.Unlock()
	}()
	var once sync.Once
	closeBoth := func() { once.Do(func() { a.Close(); b.Close() }) }
	done := make(chan struct{})
	go func() {
		io.Copy(b, a)
		p.abDone.Store(true)
		closeBoth()
		close(done)
	}()
	io.Copy(a, b)
	p.baDone.Store(true)
	closeBoth()
	<-done
}

// busy reports whether a pair is still copying.
func (j *joined) busy() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pairs) > 0
}

// report prints the pairs still joined, if any, then stalldiag.Dump; it
// reports whether any pair was still joined.
func (j *joined) report() bool {
	j.mu.Lock()
	if len(j.pairs) == 0 {
		j.mu.Unlock()
		return false
	}
	for n, p := range j.pairs {
		fmt.Fprintf(os.Stderr, "vchanpeer: relay: pair %d still joined after %v: a->b ended %v, b->a ended %v; a: %d buffered, %d free; b: %d buffered, %d free\n",
			n, time.Since(p.start).Round(time.Millisecond), p.abDone.Load(), p.baDone.Load(),
			p.a.Buffered(), p.a.Available(), p.b.Buffered(), p.b.Available())
	}
	j.mu.Unlock()
	fmt.Fprintf(os.Stderr, "vchanpeer: relay: %s\n", stalldiag.Dump())
	return true
}

// stalled writes key, for the lab's dom0 to dump Xen's view of every event
// channel while the stalled pairs are still bound, waits for it, and looks
// at the event channels again.
func stalled(key string) {
	if xs, err := xsclient.Dial(); err == nil {
		err = xs.Write(key, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
		xs.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "vchanpeer: relay: %v\n", err)
		}
	}
	time.Sleep(10 * time.Second)
	fmt.Fprintf(os.Stderr, "vchanpeer: relay: 10 s later, event channels: %s\n", stalldiag.EventChannels())
}

// published says what xenstore holds at a Listener's path, as this domain
// reads it: after an Accept timeout, whether the ring the Listener offered
// was there for clients to find (the Accept's error says when none could
// be offered).
func published(path string) string {
	xs, err := xsclient.Dial()
	if err != nil {
		return fmt.Sprintf("xenstore not readable: %v", err)
	}
	defer xs.Close()
	keys, err := xs.Directory(path)
	if err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	out := path + ":"
	if perms, err := xs.GetPerms(path); err == nil {
		out += fmt.Sprintf(" perms %v;", perms)
	}
	for _, k := range keys {
		v, err := xs.Read(path + "/" + k)
		if err != nil {
			out += fmt.Sprintf(" %s (%v)", k, err)
		} else {
			out += fmt.Sprintf(" %s=%q", k, v)
		}
		if perms, err := xs.GetPerms(path + "/" + k); err == nil {
			out += fmt.Sprintf(" perms %v", perms)
		}
	}
	return out
}

// clockSamples estimates the offset of the peer's wall clock from ours, as
// NTP does: the client sends a byte, the server answers with its time, and
// of n exchanges the one with the shortest round trip gives the offset
// (peer time minus the midpoint of ours), good to half that round trip. The
// client prints "clock-offset-ns <offset> rtt-ns <round trip>".
func clockSamples(c *vchan.Conn, server bool, n int) error {
	b := make([]byte, 8)
	best, offset := int64(-1), int64(0)
	for i := range n {
		if server {
			if _, err := io.ReadFull(c, b[:1]); err != nil {
				return fmt.Errorf("sample %d: %w", i, err)
			}
			binary.LittleEndian.PutUint64(b, uint64(time.Now().UnixNano()))
			if _, err := c.Write(b); err != nil {
				return err
			}
			continue
		}
		t0 := time.Now().UnixNano()
		if _, err := c.Write(b[:1]); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return fmt.Errorf("sample %d: %w", i, err)
		}
		t1 := time.Now().UnixNano()
		if rtt := t1 - t0; best < 0 || rtt < best {
			best, offset = rtt, int64(binary.LittleEndian.Uint64(b))-(t0+t1)/2
		}
	}
	if server {
		return c.Flush()
	}
	fmt.Fprintf(os.Stderr, "clock-offset-ns %d rtt-ns %d\n", offset, best)
	return nil
}

// startProfile starts a CPU profile into path (none when path is empty)
// and returns the function that ends it. The rate is ten times pprof's
// default: a transfer on the emulated machine lasts a second or two.
func startProfile(cpuPath, tracePath string) (stop func()) {
	stops := []func(){}
	if cpuPath != "" {
		f := create(cpuPath)
		// SetCPUProfileRate before StartCPUProfile keeps this rate; pprof's
		// own attempt to set 100 Hz then prints a warning, which is expected.
		runtime.SetCPUProfileRate(1000)
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal("cpu profile: %v", err)
		}
		stops = append(stops, pprof.StopCPUProfile, closer(f))
	}
	if tracePath != "" {
		f := create(tracePath)
		if err := trace.Start(f); err != nil {
			fatal("trace: %v", err)
		}
		stops = append(stops, trace.Stop, closer(f))
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// create creates a profile's or a trace's file, or exits.
func create(path string) *os.File {
	f, err := os.Create(path)
	if err != nil {
		fatal("%v", err)
	}
	return f
}

// closer returns a function that closes f, or exits.
func closer(f *os.File) func() {
	return func() {
		if err := f.Close(); err != nil {
			fatal("%v", err)
		}
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vchanpeer: "+format+"\n", args...)
	os.Exit(1)
}

// copyBuf is the size of each read from stdin and from the connection:
// vchan-ref's buffers, so that both implementations move the same chunks.
const copyBuf = 64 << 10

// onlyReader and onlyWriter hide *os.File's WriteTo and ReadFrom from
// io.CopyBuffer. With them, a copy between a file and anything that is not
// a socket or a file falls back to io.Copy's own 32 KiB buffer and ignores
// the one given: the lab's Go peers moved 32 KiB per read and write where
// they meant to move 256 KiB.
type (
	onlyReader struct{ io.Reader }
	onlyWriter struct{ io.Writer }
)

// timedReader notes when the first and the last read returned data, how
// many bytes came after the first, and in how many reads. It reads the
// monotonic clock only (time.Since of a start time), one clock read per
// read as vchan-ref makes: where the clock has no vDSO (Xen PV) each read
// is a system call, and time.Now would make two.
type timedReader struct {
	r           io.Reader
	first, last time.Duration // since processStart; first 0: no data yet
	after       int64
	reads       int64
}

var processStart = time.Now()

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		now := max(time.Since(processStart), 1)
		if t.first == 0 {
			t.first = now
		} else {
			t.after += int64(n)
			t.reads++
		}
		t.last = now
	}
	return n, err
}

// copySpeed copies mib MiB from one 64 KiB buffer to another in 16 KiB
// chunks, as a Conn copies into and out of a 64 KiB ring, and returns MB/s:
// the lab compares it with C's memcpy (vchan-ref -copy) on the emulated
// machine, where the two copy loops differ in cost.
func copySpeed(mib int) float64 {
	src, dst := make([]byte, 64<<10), make([]byte, 64<<10)
	for i := range src {
		src[i] = byte(i)
	}
	const chunk = 16 << 10
	total := mib << 20
	start := time.Now()
	for n := 0; n < total; n += chunk {
		off := n % len(src)
		copy(dst[off:off+chunk], src[off:off+chunk])
	}
	return float64(total) / time.Since(start).Seconds() / 1e6
}
