//go:build linux

package interop

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
	"github.com/vchan-go/vchan/vchan"
)

// ringCase is a server's (read_min, write_min).
type ringCase struct{ read, write int }

func (rc ringCase) String() string { return fmt.Sprintf("r%d_w%d", rc.read, rc.write) }

// config gives a Go server what libxenvchan_server_init gets as rc: the
// same sizes, except that libxenvchan's 0 (its smallest rings) is 1 for
// vchan.Config, where 0 means the 64 KiB default. Both round to the same
// in-page order.
func (rc ringCase) config(h *vchan.Host) *vchan.Config {
	return &vchan.Config{Host: h, ReadBufferSize: max(rc.read, 1), WriteBufferSize: max(rc.write, 1)}
}

// streamCases are the ring sizes of TestStream, and how many bytes go each
// way: enough to wrap every ring many times, small enough that the suite
// stays fast (every event is a round trip to the daemon).
var streamCases = []struct {
	ringCase
	bytes int
}{
	{ringCase{0, 0}, 256 << 10},
	{ringCase{1024, 2048}, 256 << 10},
	{ringCase{4096, 4096}, 1 << 20},
	{ringCase{65536, 65536}, 4 << 20},
	{ringCase{1 << 20, 1 << 20}, 4 << 20},
	{ringCase{1024, 65536}, 1 << 20},   // asymmetric: one in-page ring
	{ringCase{65536, 4096}, 2 << 20},   // asymmetric: both out of page
	{ringCase{2048, 1 << 20}, 2 << 20}, // asymmetric: 2 KiB in page, 1 MiB
}

// connect sets up one vchan between this process (Go) and a C peer,
// libxenvchan's vchan-peer, which runs with args added. The Go end is the
// server if goServer, with the ring sizes rc; else the C peer serves with
// them. It returns the Go end, the C peer, and its "connected" line.
func connect(t testing.TB, e *env, goServer bool, rc ringCase, args ...string) (*vchan.Conn, *testutil.Proc, string) {
	t.Helper()
	gdom, cdom := newDom(), newDom()
	h := e.host(t, gdom)
	var c *vchan.Conn
	var p *testutil.Proc
	if goServer {
		path := vpath(gdom, cdom, "s")
		ln, err := vchan.Listen(cdom, path, rc.config(h))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		p = e.start(t, cdom, "vchan-peer", append([]string{"-c", "-d", strconv.Itoa(int(gdom)), "-p", path}, args...)...)
		if err := ln.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if c, err = ln.AcceptVchan(); err != nil {
			t.Fatalf("accept: %v", err)
		}
	} else {
		path := vpath(cdom, gdom, "s")
		p = e.start(t, cdom, "vchan-peer", append([]string{"-s", "-d", strconv.Itoa(int(gdom)), "-p", path,
			"-r", strconv.Itoa(rc.read), "-w", strconv.Itoa(rc.write)}, args...)...)
		var err error
		if c, err = vchan.Dial(cdom, path, &vchan.Config{Host: h, WaitForServer: true}); err != nil {
			t.Fatalf("dial: %v", err)
		}
	}
	t.Cleanup(func() { c.Close() })
	return c, p, p.WaitLine("peer: connected", 10*time.Second)
}

func role(goServer bool) string {
	if goServer {
		return "GoServer_CClient"
	}
	return "CServer_GoClient"
}

// randomStream writes n pseudo-random bytes to w in chunks of random sizes
// (1 byte to 64 KiB, often small) and returns their SHA-256.
func randomStream(w io.Writer, n int, seed uint64) ([32]byte, error) {
	r := rand.New(rand.NewPCG(seed, 1))
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for n > 0 {
		k := 1 + r.IntN(len(buf))
		if r.IntN(4) == 0 {
			k = 1 + r.IntN(100)
		}
		k = min(k, n)
		for i := range buf[:k] {
			buf[i] = byte(r.Uint32())
		}
		h.Write(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return [32]byte{}, err
		}
		n -= k
	}
	return [32]byte(h.Sum(nil)), nil
}

// readSum reads exactly n bytes from r and returns their SHA-256.
func readSum(r io.Reader, n int) ([32]byte, error) {
	h := sha256.New()
	got, err := io.CopyN(h, r, int64(n))
	if err != nil {
		return [32]byte{}, fmt.Errorf("after %d of %d bytes: %w", got, n, err)
	}
	return [32]byte(h.Sum(nil)), nil
}

// TestStream sends a checksummed stream each way at once between Go and
// libxenvchan, with both as server, for several ring sizes.
func TestStream(t *testing.T) {
	e := getEnv(t)
	for _, sc := range streamCases {
		for _, goServer := range []bool{true, false} {
			t.Run(sc.String()+"/"+role(goServer), func(t *testing.T) {
				t.Parallel()
				c, p, _ := connect(t, e, goServer, sc.ringCase)
				if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n := sc.bytes
				var sumToC, sumFromC, gotByC, gotByGo [32]byte
				var fe firstErr
				fe.Go(func() (err error) { // test -> C stdin -> vchan
					sumToC, err = randomStream(p.Stdin, n, 1)
					p.Stdin.Close()
					return err
				})
				fe.Go(func() (err error) { // vchan -> Go
					gotByGo, err = readSum(c, n)
					return err
				})
				fe.Go(func() (err error) { // Go -> vchan
					sumFromC, err = randomStream(c, n, 2)
					return err
				})
				fe.Go(func() (err error) { // vchan -> C stdout -> test
					gotByC, err = readSum(p.Stdout, n)
					return err
				})
				if err := fe.Wait(); err != nil {
					t.Fatal(err)
				}
				if gotByGo != sumToC {
					t.Errorf("C -> Go: checksum mismatch over %d bytes", n)
				}
				if gotByC != sumFromC {
					t.Errorf("Go -> C: checksum mismatch over %d bytes", n)
				}
				// Go closes: the C peer sees it and exits cleanly.
				c.Close()
				p.WaitLine("peer: is_open=0", 5*time.Second)
				if err := p.Wait(5 * time.Second); err != nil {
					t.Errorf("C peer: %v", err)
				}
			})
		}
	}
}

// orderCases are (read_min, write_min) pairs around every rule of
// libxenvchan_server_init's order choice (docs/PROTOCOL.md §1.4).
var orderCases = []ringCase{
	{0, 0}, {1, 1}, {1024, 2048}, {2048, 1024}, {1025, 1024}, {1024, 2049},
	{2048, 2048}, {2048, 4096}, {4096, 2048}, {4096, 4096}, {4097, 1},
	{1024, 65536}, {65536, 1024}, {3000, 100}, {100, 3000}, {5000, 3000},
	{65536, 65536}, {1 << 20, 1 << 20}, {1 << 20, 0}, {0, 1 << 20}, {(1 << 19) + 1, 2048},
}

// TestOrderChoice checks that a Go server picks the same ring orders as
// libxenvchan_server_init for the same minimum sizes: a C client prints
// the orders it finds in the page a Go server shared, and a C server
// prints the orders it wrote; a Go client's RingSizes must agree.
func TestOrderChoice(t *testing.T) {
	e := getEnv(t)
	for _, rc := range orderCases {
		t.Run(rc.String(), func(t *testing.T) {
			t.Parallel()
			var orders [2][2]int
			for i, goServer := range []bool{true, false} {
				c, p, line := connect(t, e, goServer, rc)
				l, r, err := parseOrders(line)
				if err != nil {
					t.Fatal(err)
				}
				orders[i] = [2]int{l, r}
				if !goServer {
					// The client reads the right ring and writes the left.
					rd, wr := c.RingSizes()
					if rd != 1<<r || wr != 1<<l {
						t.Errorf("Go client's RingSizes() = %d, %d; the C server wrote orders left %d, right %d", rd, wr, l, r)
					}
				}
				c.Close()
				p.Stdin.Close()
				if err := p.Wait(5 * time.Second); err != nil {
					t.Errorf("C peer: %v", err)
				}
			}
			if orders[0] != orders[1] {
				t.Errorf("orders (left, right): Go server %v, C server %v", orders[0], orders[1])
			}
		})
	}
}

// TestPeerLoadsTheNamedLibrary: the C peer runs the libxenvchan that
// VCHAN_INTEROP_XEN names (4.17 by default, or 4.20), read from its memory
// map while it is connected, so a run meant for 4.20 cannot pass on 4.17.
func TestPeerLoadsTheNamedLibrary(t *testing.T) {
	e := getEnv(t)
	_, p, _ := connect(t, e, true, ringCase{4096, 4096})
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	want := "/libxenvchan.so." + xenVersion
	if !bytes.Contains(maps, []byte(want)) {
		t.Fatalf("the C peer's memory map has no %s:\n%s", want, maps)
	}
}

// TestCloseCFirst: the C peer writes, closes and exits before Go reads
// anything; Go still reads all of it, then io.EOF.
func TestCloseCFirst(t *testing.T) {
	e := getEnv(t)
	for _, goServer := range []bool{true, false} {
		t.Run(role(goServer), func(t *testing.T) {
			t.Parallel()
			c, p, _ := connect(t, e, goServer, ringCase{65536, 65536}, "-x")
			want := bytes.Repeat([]byte("last words "), 4000) // 44000 bytes, fits the ring
			if _, err := p.Stdin.Write(want); err != nil {
				t.Fatal(err)
			}
			p.Stdin.Close()
			p.WaitLine("peer: closed", 10*time.Second)
			if err := p.Wait(5 * time.Second); err != nil {
				t.Fatalf("C peer: %v", err)
			}
			if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c) // reads until io.EOF
			if err != nil {
				t.Fatalf("after %d bytes: %v (want io.EOF after %d)", len(got), err, len(want))
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want the %d the C peer wrote", len(got), len(want))
			}
			if n, err := c.Read(make([]byte, 1)); n != 0 || !isEOF(err) {
				t.Fatalf("Read after EOF = %d, %v; want io.EOF", n, err)
			}
		})
	}
}

// TestCloseGoFirst: Go writes and closes; the C peer reads it all and
// libxenvchan_is_open returns 0.
func TestCloseGoFirst(t *testing.T) {
	e := getEnv(t)
	for _, goServer := range []bool{true, false} {
		t.Run(role(goServer), func(t *testing.T) {
			t.Parallel()
			c, p, _ := connect(t, e, goServer, ringCase{65536, 65536})
			want := bytes.Repeat([]byte("goodbye "), 5000)
			if _, err := c.Write(want); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(p.Stdout)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("C peer wrote %d bytes (%v), want the %d Go wrote before closing", len(got), err, len(want))
			}
			p.WaitLine("peer: is_open=0", 5*time.Second)
			if err := p.Wait(5 * time.Second); err != nil {
				t.Fatalf("C peer: %v", err)
			}
		})
	}
}

// ping exchanges a line each way between the Go end and a peer process in
// cat mode (C peer or gopeer), so both are surely connected.
func ping(t testing.TB, c *vchan.Conn, p *testutil.Proc) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("to-peer\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := p.Stdout.ReadString('\n'); err != nil || line != "to-peer\n" {
		t.Fatalf("peer printed %q, %v", line, err)
	}
	if _, err := io.WriteString(p.Stdin, "from-peer\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("from-peer\n"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "from-peer\n" {
		t.Fatalf("Go read %q, %v", buf, err)
	}
}

// TestKillC: kill -9 of the C peer; the Go end's Read returns io.EOF
// within 1 s (the daemon fires the unmap notification, as the kernel does).
func TestKillC(t *testing.T) {
	e := getEnv(t)
	for _, goServer := range []bool{true, false} {
		t.Run(role(goServer), func(t *testing.T) {
			t.Parallel()
			c, p, _ := connect(t, e, goServer, ringCase{0, 0})
			ping(t, c, p)
			start := time.Now()
			p.Kill()
			if err := c.SetReadDeadline(start.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := c.Read(make([]byte, 10))
			if n != 0 || !isEOF(err) {
				t.Fatalf("Read after kill -9 of the C peer = %d, %v; want io.EOF within 1 s", n, err)
			}
			t.Logf("io.EOF %v after the kill", time.Since(start))
		})
	}
}

// TestKillGo: kill -9 of a Go peer process (gopeer); the C peer's
// libxenvchan_is_open returns 0 within 1 s.
func TestKillGo(t *testing.T) {
	e := getEnv(t)
	for _, goServer := range []bool{true, false} {
		t.Run(role(goServer), func(t *testing.T) {
			t.Parallel()
			gdom, cdom := newDom(), newDom()
			var g, p *testutil.Proc
			if goServer {
				path := vpath(gdom, cdom, "k")
				g = e.start(t, gdom, "gopeer", "-server", "-remote", strconv.Itoa(int(cdom)), "-path", path)
				p = e.start(t, cdom, "vchan-peer", "-c", "-d", strconv.Itoa(int(gdom)), "-p", path)
			} else {
				path := vpath(cdom, gdom, "k")
				p = e.start(t, cdom, "vchan-peer", "-s", "-d", strconv.Itoa(int(gdom)), "-p", path)
				g = e.start(t, gdom, "gopeer", "-remote", strconv.Itoa(int(cdom)), "-path", path)
			}
			g.WaitLine("gopeer: connected", 10*time.Second)
			p.WaitLine("peer: is_open=1", 10*time.Second)
			// A line each way through both processes.
			if _, err := io.WriteString(g.Stdin, "from-go\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := p.Stdout.ReadString('\n'); err != nil || line != "from-go\n" {
				t.Fatalf("C peer printed %q, %v", line, err)
			}
			if _, err := io.WriteString(p.Stdin, "from-c\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := g.Stdout.ReadString('\n'); err != nil || line != "from-c\n" {
				t.Fatalf("gopeer printed %q, %v", line, err)
			}
			start := time.Now()
			g.Kill()
			p.WaitLine("peer: is_open=0", time.Second)
			t.Logf("is_open=0 %v after the kill", time.Since(start))
		})
	}
}

// exchange runs one side of a request/response exchange over a stream:
// it sends "req <me>", answers the other side's request with "resp <me>",
// and returns once it has both the other side's request and its response.
func exchange(rw io.ReadWriter, me string) error {
	if _, err := io.WriteString(rw, "req "+me+"\n"); err != nil {
		return err
	}
	r := bufio.NewReader(rw)
	var gotReq, gotResp bool
	for !gotReq || !gotResp {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: after %q: %w", me, line, err)
		}
		switch {
		case strings.HasPrefix(line, "req ") && line != "req "+me+"\n":
			gotReq = true
			if _, err := io.WriteString(rw, "resp "+me+"\n"); err != nil {
				return err
			}
		case strings.HasPrefix(line, "resp ") && line != "resp "+me+"\n":
			gotResp = true
		default:
			return fmt.Errorf("%s: unexpected line %q", me, line)
		}
	}
	return nil
}

var proxyPath = filepath.Join("usr", "lib", "xen-4.17", "bin", "vchan-socket-proxy")

// TestSocketProxyServer: Debian's vchan-socket-proxy serves a vchan and
// bridges it to a unix socket the test serves; a Go client dials it.
func TestSocketProxyServer(t *testing.T) {
	e := getEnv(t)
	gdom, pdom := newDom(), newDom()
	sock := filepath.Join(e.tmp, fmt.Sprintf("ps%d.sock", pdom))
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	path := vpath(pdom, gdom, "qmp")
	p := e.start(t, pdom, filepath.Join(e.root, proxyPath), "-m", "server", strconv.Itoa(int(gdom)), path, sock)

	c, err := vchan.Dial(pdom, path, &vchan.Config{Host: e.host(t, gdom), WaitForServer: true})
	if err != nil {
		t.Fatalf("dial vchan-socket-proxy: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// The proxy connects to the unix socket once the vchan client is in.
	acc := make(chan net.Conn, 1)
	go func() {
		u, err := ul.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- u
	}()
	var u net.Conn
	select {
	case u = <-acc:
	case <-time.After(10 * time.Second):
	}
	if u == nil {
		t.Fatalf("vchan-socket-proxy did not connect to the unix socket")
	}
	defer u.Close()
	if err := u.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var fe firstErr
	fe.Go(func() error { return exchange(c, "go") })
	fe.Go(func() error { return exchange(u, "unix") })
	if err := fe.Wait(); err != nil {
		t.Fatal(err)
	}
	// The vchan client leaves: the proxy closes the unix connection.
	c.Close()
	if n, err := u.Read(make([]byte, 1)); n != 0 || !isEOF(err) {
		t.Fatalf("unix side after the Go client closed: %d, %v; want EOF", n, err)
	}
	select {
	case <-p.Done():
		t.Fatalf("vchan-socket-proxy exited (%v); it should wait for the next client", p.Err())
	default:
	}
}

// TestSocketProxyClient: Debian's vchan-socket-proxy listens on a unix
// socket and, for each connection, dials a vchan a Go server serves.
func TestSocketProxyClient(t *testing.T) {
	e := getEnv(t)
	gdom, pdom := newDom(), newDom()
	sock := filepath.Join(e.tmp, fmt.Sprintf("pc%d.sock", pdom))
	path := vpath(gdom, pdom, "qmp")
	ln, err := vchan.Listen(pdom, path, &vchan.Config{Host: e.host(t, gdom)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e.start(t, pdom, filepath.Join(e.root, proxyPath), "-m", "client", strconv.Itoa(int(gdom)), path, sock)

	var u net.Conn
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if u, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("vchan-socket-proxy does not listen on %s: %v", sock, err)
		}
	}
	defer u.Close()
	if err := ln.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c, err := ln.AcceptVchan()
	if err != nil {
		t.Fatalf("accept from vchan-socket-proxy: %v", err)
	}
	defer c.Close()
	for _, d := range []interface{ SetDeadline(time.Time) error }{c, u} {
		if err := d.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var fe firstErr
	fe.Go(func() error { return exchange(c, "go") })
	fe.Go(func() error { return exchange(u, "unix") })
	if err := fe.Wait(); err != nil {
		t.Fatal(err)
	}
	// The unix client leaves: the proxy closes the vchan.
	u.Close()
	if n, err := c.Read(make([]byte, 1)); n != 0 || !isEOF(err) {
		t.Fatalf("Go server after the unix client closed: %d, %v; want io.EOF", n, err)
	}
}

// ---- Benchmarks ----
//
// Each benchmark sets up four pairs on the same simulator and, per
// iteration, runs the same work on each in turn, timing each:
//
//	CC    C client -> C server, both libxenvchan processes
//	GoGo  Go client -> Go server, both in this process over two SimHosts
//	      (two control connections: each notify is still a daemon round trip)
//	GoC   Go client (this process) -> C server
//	CGo   C client -> Go server (this process)
//
// and reports each pair's figure and its ratio to CC.

// pairs holds the four connections of a benchmark.
type pairs struct {
	ccServer, ccClient *testutil.Proc // CC: commands go to both
	gogoC, gogoS       *vchan.Conn
	gocC               *vchan.Conn
	gocS               *testutil.Proc
	cgoC               *testutil.Proc
	cgoS               *vchan.Conn
}

func setupPairs(b *testing.B, e *env, rc ringCase, serverMode, clientMode string) *pairs {
	var ps pairs
	rs, ws := strconv.Itoa(rc.read), strconv.Itoa(rc.write)
	cfg := func(h *vchan.Host) *vchan.Config {
		return rc.config(h)
	}
	// CC
	s, c := newDom(), newDom()
	path := vpath(s, c, "b")
	ps.ccServer = e.start(b, s, "vchan-peer", "-s", "-d", strconv.Itoa(int(c)), "-p", path, "-r", rs, "-w", ws, "-m", serverMode)
	ps.ccClient = e.start(b, c, "vchan-peer", "-c", "-d", strconv.Itoa(int(s)), "-p", path, "-m", clientMode)
	ps.ccServer.WaitLine("peer: connected", 10*time.Second)
	ps.ccClient.WaitLine("peer: connected", 10*time.Second)
	// GoGo
	s, c = newDom(), newDom()
	ln, err := vchan.Listen(c, "b", cfg(e.host(b, s)))
	if err != nil {
		b.Fatal(err)
	}
	if ps.gogoC, err = vchan.Dial(s, "b", &vchan.Config{Host: e.host(b, c), WaitForServer: true}); err != nil {
		b.Fatal(err)
	}
	if ps.gogoS, err = ln.AcceptVchan(); err != nil {
		b.Fatal(err)
	}
	ln.Close()
	// GoC
	s, c = newDom(), newDom()
	path = vpath(s, c, "b")
	ps.gocS = e.start(b, s, "vchan-peer", "-s", "-d", strconv.Itoa(int(c)), "-p", path, "-r", rs, "-w", ws, "-m", serverMode)
	if ps.gocC, err = vchan.Dial(s, path, &vchan.Config{Host: e.host(b, c), WaitForServer: true}); err != nil {
		b.Fatal(err)
	}
	ps.gocS.WaitLine("peer: connected", 10*time.Second)
	// CGo
	s, c = newDom(), newDom()
	path = vpath(s, c, "b")
	if ln, err = vchan.Listen(c, path, cfg(e.host(b, s))); err != nil {
		b.Fatal(err)
	}
	ps.cgoC = e.start(b, c, "vchan-peer", "-c", "-d", strconv.Itoa(int(s)), "-p", path, "-m", clientMode)
	if ps.cgoS, err = ln.AcceptVchan(); err != nil {
		b.Fatal(err)
	}
	ln.Close()
	ps.cgoC.WaitLine("peer: connected", 10*time.Second)
	b.Cleanup(func() {
		for _, c := range []*vchan.Conn{ps.gogoC, ps.gogoS, ps.gocC, ps.cgoS} {
			c.Close()
		}
	})
	return &ps
}

// timed runs fn and adds its duration to *d.
func timed(b *testing.B, d *time.Duration, fn func() error) {
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	*d += time.Since(start)
}

// both runs two functions at once and returns the first error.
func both(f, g func() error) error {
	var fe firstErr
	fe.Go(f)
	fe.Go(g)
	return fe.Wait()
}

func report(b *testing.B, unit string, perPair func(d time.Duration) float64, cc, gogo, goc, cgo time.Duration) {
	for _, m := range []struct {
		name string
		d    time.Duration
	}{{"CC", cc}, {"GoGo", gogo}, {"GoC", goc}, {"CGo", cgo}} {
		b.ReportMetric(perPair(m.d), m.name+"-"+unit)
		if m.name != "CC" {
			b.ReportMetric(perPair(m.d)/perPair(cc), m.name+"/CC")
		}
	}
}

// BenchmarkThroughput: bulk transfer client -> server in 64 KiB writes,
// 64 KiB rings. Metrics: MB/s of each pair and its ratio to C<->C.
func BenchmarkThroughput(b *testing.B) {
	e := getEnv(b)
	const per = 4 << 20 // bytes per pair per iteration
	ps := setupPairs(b, e, ringCase{65536, 65536}, "sink", "source")
	chunk := make([]byte, 64<<10)
	goWrite := func(c *vchan.Conn) func() error {
		return func() error {
			for n := 0; n < per; n += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return err
				}
			}
			return nil
		}
	}
	goRead := func(c *vchan.Conn) func() error {
		return func() error { _, err := io.CopyN(io.Discard, c, per); return err }
	}
	cmd := func(p *testutil.Proc) func() error { return func() error { return command(p, strconv.Itoa(per)) } }
	var cc, gogo, goc, cgo time.Duration
	b.ResetTimer()
	for range b.N {
		timed(b, &cc, func() error { return both(cmd(ps.ccServer), cmd(ps.ccClient)) })
		timed(b, &gogo, func() error { return both(goRead(ps.gogoS), goWrite(ps.gogoC)) })
		timed(b, &goc, func() error { return both(cmd(ps.gocS), goWrite(ps.gocC)) })
		timed(b, &cgo, func() error { return both(goRead(ps.cgoS), cmd(ps.cgoC)) })
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(per) * float64(b.N) / d.Seconds() / 1e6 }
	report(b, "MB/s", mbps, cc, gogo, goc, cgo)
}

// BenchmarkPingPong: 1-byte round trips, client pings, server echoes,
// default rings. Metrics: µs per round trip of each pair and its ratio to
// C<->C.
func BenchmarkPingPong(b *testing.B) {
	e := getEnv(b)
	const per = 200 // round trips per pair per iteration
	ps := setupPairs(b, e, ringCase{0, 0}, "echo", "ping")
	go func() { _, _ = io.Copy(ps.gogoS, ps.gogoS) }() // Go echo servers
	go func() { _, _ = io.Copy(ps.cgoS, ps.cgoS) }()
	goPing := func(c *vchan.Conn) error {
		buf := make([]byte, 1)
		for range per {
			if _, err := c.Write(buf); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return err
			}
		}
		return nil
	}
	var cc, gogo, goc, cgo time.Duration
	b.ResetTimer()
	for range b.N {
		timed(b, &cc, func() error { return command(ps.ccClient, strconv.Itoa(per)) })
		timed(b, &gogo, func() error { return goPing(ps.gogoC) })
		timed(b, &goc, func() error { return goPing(ps.gocC) })
		timed(b, &cgo, func() error { return command(ps.cgoC, strconv.Itoa(per)) })
	}
	b.StopTimer()
	usPerRT := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(per*b.N) }
	report(b, "us/rt", usPerRT, cc, gogo, goc, cgo)
}
