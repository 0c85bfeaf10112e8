package vchan

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/ring"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// connPair connects a dom0 server to a dom1 client on a fresh simulator.
func connPair(t testing.TB, read, write int) (sim *Simulator, srv, cli *Conn) {
	t.Helper()
	return connPairDoms(t, 0, 1, read, write)
}

// connPairDoms connects a server in domain sd to a client in domain cd.
func connPairDoms(t testing.TB, sd, cd uint16, read, write int) (sim *Simulator, srv, cli *Conn) {
	t.Helper()
	sim = NewSimulator()
	ln, err := Listen(cd, "7000", &Config{Host: sim.Domain(sd), ReadBufferSize: read, WriteBufferSize: write})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan error, 1)
	go func() {
		var err error
		cli, err = Dial(sd, "7000", &Config{Host: sim.Domain(cd)})
		dialed <- err
	}()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	srv, err = ln.AcceptVchan()
	if derr := <-dialed; derr != nil || err != nil {
		t.Fatalf("dial: %v; accept: %v", derr, err)
	}
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return sim, srv, cli
}

// page returns the shared page as this end maps it.
func (c *Conn) page() []byte { return c.regions[len(c.regions)-1].Bytes() }

func TestDrainThenEOF(t *testing.T) {
	_, srv, cli := connPair(t, 4096, 4096)
	msg := bytes.Repeat([]byte("0123456789"), 300)
	if n, err := srv.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	srv.Close()
	got, err := io.ReadAll(cli)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("ReadAll after peer close = %d bytes, %v; want %d bytes, nil", len(got), err, len(msg))
	}
	if n, err := cli.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read after drain = %d, %v; want 0, io.EOF (bare)", n, err)
	}
}

func TestWriteAfterPeerClose(t *testing.T) {
	_, srv, cli := connPair(t, 1, 1)
	cli.Close()
	start := time.Now()
	n, err := srv.Write([]byte("late"))
	if n != 0 || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after peer close = %d, %v; want 0, EPIPE", n, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || oe.Net != "vchan" || oe.Addr == nil || oe.Source == nil {
		t.Errorf("error %#v is not a filled *net.OpError", err)
	}
	if time.Since(start) > time.Second {
		t.Error("Write after peer close did not fail at once")
	}
	// A write blocked on a full ring fails when the peer closes.
	_, srv2, cli2 := connPair(t, 1, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := srv2.Write(make([]byte, 100000))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cli2.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, syscall.EPIPE) {
			t.Errorf("blocked Write when the peer closed = %v, want EPIPE", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("blocked Write did not return when the peer closed")
	}
}

func TestCloseErrors(t *testing.T) {
	_, srv, _ := connPair(t, 1, 1)
	srv.Close()
	if _, err := srv.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := srv.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if err := srv.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline after Close = %v, want net.ErrClosed", err)
	}
	var oe *net.OpError
	if err := srv.Close(); !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) || oe.Op != "close" {
		t.Errorf("second Close = %v, want a close *net.OpError wrapping net.ErrClosed", err)
	}
	if err := srv.SetReadDeadline(time.Now()); !errors.As(err, &oe) || oe.Op != "set" || oe.Source != nil || oe.Addr != srv.LocalAddr() {
		t.Errorf("SetReadDeadline after Close = %#v, want Op set, Addr the local address, no Source (as net)", err)
	}
}

func TestTimeoutError(t *testing.T) {
	_, srv, _ := connPair(t, 1, 1)
	srv.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := srv.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past deadline = %v, want a Timeout() os.ErrDeadlineExceeded", err)
	}
}

// protocolCase corrupts the shared page from the peer's side.
type protocolCase struct {
	name    string
	corrupt func(page []byte)
	op      func(c *Conn) error
}

// TestHostileIndices: a peer that breaks the ring protocol makes blocked and
// new operations fail with ErrProtocol within their deadline, not hang, and
// the error sticks.
func TestHostileIndices(t *testing.T) {
	read := func(c *Conn) error { _, err := c.Read(make([]byte, 16)); return err }
	write := func(c *Conn) error { _, err := c.Write(make([]byte, 64<<10)); return err }
	for _, tc := range []protocolCase{
		// left.prod (the client's producer index) far ahead of the server's cons.
		{"server-read-prod-ahead", func(p []byte) { binary.NativeEndian.PutUint32(p[4:], 0x7fffffff) }, read},
		// right.cons (the client's consumer index) ahead of the server's prod.
		{"server-write-cons-ahead", func(p []byte) { binary.NativeEndian.PutUint32(p[8:], 0x7fffffff) }, write},
		// cli_live set to garbage after connect.
		{"server-write-live-garbage", func(p []byte) { p[20] = 7 }, write},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv, cli := connPair(t, 4096, 4096)
			errc := make(chan error, 1)
			go func() {
				srv.SetDeadline(time.Now().Add(5 * time.Second))
				errc <- tc.op(srv)
			}()
			time.Sleep(10 * time.Millisecond) // let it block (or not)
			tc.corrupt(cli.page())
			cli.ch.Notify()
			select {
			case err := <-errc:
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("got %v, want ErrProtocol", err)
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("protocol error reported as a timeout: %v", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("operation hung on a corrupt ring")
			}
			if err := tc.op(srv); !errors.Is(err, ErrProtocol) {
				t.Errorf("next operation = %v, want the sticky ErrProtocol", err)
			}
		})
	}
	t.Run("client-read-prod-ahead", func(t *testing.T) {
		_, srv, cli := connPair(t, 1, 1)
		binary.NativeEndian.PutUint32(srv.page()[12:], 5000) // right.prod
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cli.Read(make([]byte, 8)); !errors.Is(err, ErrProtocol) {
			t.Fatalf("client Read = %v, want ErrProtocol", err)
		}
	})
}

// hostileServer publishes a page written by hand at path for dom1.
func hostileServer(t *testing.T, sim *Simulator, path string, fill func(page []byte)) {
	t.Helper()
	h := sim.Domain(0)
	evt, _ := h.evtchn()
	ch, err := evt.BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := h.gntSharer()
	pg, err := sh.Share(1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(); ch.Close() })
	fill(pg.Bytes())
	xs := testXS(h)
	xs.Write(path+"/ring-ref", []byte(itoa(uint64(pg.Refs()[0]))))
	xs.Write(path+"/event-channel", []byte(itoa(uint64(ch.LocalPort()))))
	xs.SetPerms(path+"/ring-ref", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}})
	xs.SetPerms(path+"/event-channel", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// fullXS is what tests call on a host's xenstore client beyond the engine's
// xenstore.Client; the simulated and the real clients both have it.
type fullXS interface {
	xenstore.Client
	Write(path string, value []byte) error
	SetPerms(path string, perms []xenstore.Perm) error
	Directory(path string) ([]string, error)
	Close() error
}

// testXS returns the xenstore client h gives the engine, with fullXS.
func testXS(h *Host) fullXS {
	xs, _ := h.xenstore()
	return xs.(fullXS)
}

// TestHostileLayout: a server page with impossible orders or a grant list
// that cannot fit makes Dial fail with ErrProtocol at once.
func TestHostileLayout(t *testing.T) {
	for _, tc := range []struct {
		name        string
		left, right uint16
	}{
		{"order-too-small", 9, 12},
		{"order-too-large", 12, 21},
		{"equal-inpage", 10, 10},
		{"grants-do-not-fit", 10, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := NewSimulator()
			hostileServer(t, sim, "/local/domain/0/data/vchan/1/9", func(p []byte) {
				binary.NativeEndian.PutUint16(p[16:], tc.left)
				binary.NativeEndian.PutUint16(p[18:], tc.right)
				p[20], p[21] = ring.LiveWaiting, ring.LiveOpen
			})
			start := time.Now()
			_, err := Dial(0, "9", &Config{Host: sim.Domain(1)})
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Dial = %v, want ErrProtocol", err)
			}
			if time.Since(start) > time.Second {
				t.Errorf("Dial took %v to reject the page", time.Since(start))
			}
			if res := sim.Resources(1); res != (Resources{}) {
				t.Errorf("failed Dial left %+v behind", res)
			}
		})
	}
}

func TestHostileXenstoreValues(t *testing.T) {
	for _, v := range []string{"0", "-1", "abc", "4294967296", " 12", "12\x00", "99999999999"} {
		sim := NewSimulator()
		xs := testXS(sim.Domain(0))
		path := "/local/domain/0/data/vchan/1/9"
		xs.Write(path+"/ring-ref", []byte(v))
		xs.Write(path+"/event-channel", []byte("5"))
		xs.SetPerms(path+"/ring-ref", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}})
		xs.SetPerms(path+"/event-channel", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}})
		_, err := Dial(0, "9", &Config{Host: sim.Domain(1)})
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("ring-ref %q: Dial = %v, want ErrProtocol", v, err)
		}
	}
}

func TestDialWaitsForServer(t *testing.T) {
	sim := NewSimulator()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := DialContext(ctx, 0, "42", &Config{Host: sim.Domain(1), WaitForServer: true})
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ln, err := Listen(1, "42", &Config{Host: sim.Domain(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Dial before Listen = %v, want success once the server appears", err)
	}
}

func TestDialTimeout(t *testing.T) {
	sim := NewSimulator()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := DialContext(ctx, 0, "43", &Config{Host: sim.Domain(1), WaitForServer: true})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Dial waiting for a server that never comes = %v, want a timeout", err)
	}
	if !strings.Contains(err.Error(), "/local/domain/0/data/vchan/1/43") {
		t.Errorf("error %q does not name the path", err)
	}
}

func TestPaths(t *testing.T) {
	sim := NewSimulator()
	for _, bad := range []string{"", "a/b", "x y", "/local/domain/0/data/vchan/1/" + strings.Repeat("p", 30), "port.1", "/a//b", "/a/"} {
		if _, err := Listen(1, bad, &Config{Host: sim.Domain(0)}); err == nil {
			t.Errorf("Listen(%q) succeeded, want an error", bad)
		}
	}
	ln, err := Listen(1, "/local/domain/0/custom", &Config{Host: sim.Domain(0)})
	if err != nil {
		t.Fatalf("Listen on an absolute path: %v", err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); got != "dom0:/local/domain/0/custom" {
		t.Errorf("Addr = %q", got)
	}
	if ln.Addr().Network() != "vchan" {
		t.Errorf("Network = %q", ln.Addr().Network())
	}
}

// TestXenstoreLifecycle: the listener publishes ring-ref and event-channel
// readable by the client only, re-publishes after each accept, and removes
// the directory on Close.
func TestXenstoreLifecycle(t *testing.T) {
	sim := NewSimulator()
	sim.Domain(0)
	sim.Domain(1)
	sim.Domain(2)
	before := sim.XenstoreNodes()
	ln, err := Listen(1, "77", &Config{Host: sim.Domain(0)})
	if err != nil {
		t.Fatal(err)
	}
	base := "/local/domain/0/data/vchan/1/77"
	perms := map[string]string{}
	sim.XenstoreDump(func(p string, _ []byte, ps string) { perms[p] = ps })
	for _, k := range []string{"ring-ref", "event-channel"} {
		if got := perms[base+"/"+k]; got != "n0 r1" {
			t.Errorf("%s perms = %q, want \"n0 r1\"", k, got)
		}
	}
	xs2, _ := sim.Domain(2).xenstore()
	if _, err := xs2.Read(base + "/ring-ref"); !errors.Is(err, syscall.EACCES) {
		t.Errorf("dom2 reading the ring-ref = %v, want EACCES", err)
	}
	xs0, _ := sim.Domain(0).xenstore()
	ref1, _ := xs0.Read(base + "/ring-ref")
	go func() {
		if c, err := Dial(0, "77", &Config{Host: sim.Domain(1)}); err == nil {
			c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ref2, _ := xs0.Read(base + "/ring-ref")
	if bytes.Equal(ref1, ref2) {
		t.Errorf("ring-ref still %s after accept; want a fresh ring", ref1)
	}
	ln.Close()
	if _, err := xs0.Read(base); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("%s after Close: %v, want ENOENT", base, err)
	}
	if got := sim.XenstoreNodes(); got > before+3 { // data, vchan, 1 may stay, as with libxenvchan
		t.Errorf("xenstore has %d nodes after Close, %d before", got, before)
	}
}

// TestPeerDomainDestroyed: when the peer's domain is destroyed, no unmap
// notification comes (its kernel is gone). A dom0 survivor learns it from
// @releaseDomain and the peer's home being gone; a domU survivor, which may
// not read the peer's home, from the event channel's status (evtchn's
// ErrPeerGone). Blocked and later operations fail promptly with
// ECONNRESET, after what the peer wrote before dying has been read. Both
// roles.
func TestPeerDomainDestroyed(t *testing.T) {
	for _, tc := range []struct {
		survivorDom    uint16
		victimIsClient bool
	}{{0, true}, {0, false}, {1, true}, {1, false}} {
		sim, srv, cli := connPairDoms(t, tc.survivorDom, 3, 1, 1)
		survivor, victim, victimDom := srv, cli, uint16(3)
		if !tc.victimIsClient {
			sim, srv, cli = connPairDoms(t, 2, tc.survivorDom, 1, 1)
			survivor, victim, victimDom = cli, srv, 2
		}
		victim.Write([]byte("last words"))
		buf := make([]byte, 64)
		if n, err := survivor.Read(buf); err != nil || string(buf[:n]) != "last words" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		victim.Write([]byte("more"))
		errc := make(chan error, 1)
		go func() {
			survivor.Read(buf) // "more"
			_, err := survivor.Read(buf)
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond)
		start := time.Now()
		sim.Destroy(victimDom)
		select {
		case err := <-errc:
			if !errors.Is(err, syscall.ECONNRESET) || !strings.Contains(err.Error(), "gone") {
				t.Errorf("Read when the peer domain was destroyed = %v, want ECONNRESET saying it is gone", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Read did not notice the peer domain being destroyed within 1 s")
		}
		t.Logf("peer domain %d destroyed: noticed in %v", victimDom, time.Since(start))
		if _, err := survivor.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Write after the peer domain was destroyed = %v, want ECONNRESET", err)
		}
		survivor.Close()
		victim.Close() // the dead domain's objects still close cleanly
	}
}

func TestNoGoroutineOutlivesClose(t *testing.T) {
	base := runtime.NumGoroutine()
	for range 20 {
		_, srv, cli := connPair(t, 65536, 65536)
		srv.SetReadDeadline(time.Now().Add(time.Hour))
		cli.Write([]byte("x"))
		srv.Read(make([]byte, 1))
		srv.Close()
		cli.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after closing everything, %d before", n, base)
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	_, srv, cli := connPair(t, 65536, 65536)
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		cli.Write(buf)
		if _, err := io.ReadFull(srv, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("steady-state Write+Read allocates %.1f times per op, want 0", allocs)
	}
}

// TestGrantLimit: a server past the grant limit gets an error naming it.
func TestGrantLimit(t *testing.T) {
	sim := NewSimulatorConfig(SimulatorConfig{GrantLimit: 8})
	_, err := Listen(1, "1", &Config{Host: sim.Domain(0), ReadBufferSize: 65536})
	if !errors.Is(err, gnt.ErrNoSpace) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Listen past the grant limit = %v, want gnt.ErrNoSpace naming the limit", err)
	}
	if res := sim.Resources(0); res != (Resources{}) {
		t.Errorf("failed Listen left %+v behind", res)
	}
}

// TestClientGoneBeforeAccept: a client that connects, writes and closes
// before the server accepts loses nothing: Accept returns a connection that
// delivers the data, then io.EOF.
func TestClientGoneBeforeAccept(t *testing.T) {
	sim := NewSimulator()
	ln, err := Listen(1, "44", &Config{Host: sim.Domain(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Dial(0, "44", &Config{Host: sim.Domain(1)})
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Errorf("ReadAll = %q, %v; want \"hello\", nil", got, err)
	}
}

// TestDialXenstoreGone: if the xenstore connection dies while Dial waits,
// Dial fails at once instead of spinning until its deadline.
func TestDialXenstoreGone(t *testing.T) {
	sim := NewSimulator()
	h := sim.Domain(1)
	xs := testXS(h)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := DialContext(ctx, 0, "55", &Config{Host: h, WaitForServer: true})
		done <- err
	}()
	time.Sleep(30 * time.Millisecond)
	xs.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "watch") {
			t.Errorf("Dial after xenstore closed = %v, want an error about the watch", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Dial kept waiting after its xenstore connection closed")
	}
}

// TestFlushPeerReadsAllThenCloses: a peer that reads everything and closes
// at once has been flushed. (xenlab once saw a ping server's Flush fail with
// EPIPE after the client had read every byte: Flush looked at the index,
// then at the live byte, and the peer read and closed in between.)
func TestFlushPeerReadsAllThenCloses(t *testing.T) {
	for i := range 300 {
		_, srv, cli := connPair(t, 4096, 4096)
		if _, err := srv.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			b := make([]byte, 1)
			_, err := io.ReadFull(cli, b)
			cli.Close()
			done <- err
		}()
		if err := srv.Flush(); err != nil {
			t.Fatalf("round %d: Flush after the peer read everything and closed: %v", i, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		srv.Close()
	}
}

// TestDefaultRingSize: a Config that leaves the sizes 0 gets
// DefaultRingSize both ways; 1 and 1 give libxenvchan's in-page rings.
func TestDefaultRingSize(t *testing.T) {
	_, srv, cli := connPair(t, 0, 0)
	if r, w := srv.RingSizes(); r != DefaultRingSize || w != DefaultRingSize {
		t.Errorf("server rings %d/%d, want %d both", r, w, DefaultRingSize)
	}
	if r, w := cli.RingSizes(); r != DefaultRingSize || w != DefaultRingSize {
		t.Errorf("client rings %d/%d, want %d both", r, w, DefaultRingSize)
	}
	_, srv, _ = connPair(t, 1, 1)
	if r, w := srv.RingSizes(); r != 1024 || w != 2048 {
		t.Errorf("1, 1: server rings %d/%d, want libxenvchan's 1024/2048", r, w)
	}
}
