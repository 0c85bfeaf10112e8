package xsserver_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore/xsserver"
	"github.com/vchan-go/vchan/internal/xenstore/xssim"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// start serves store on a socket in a temp dir; domid decides each
// connection's domain (nil: dom0).
func start(t *testing.T, store *xssim.Store, domid func(*net.UnixConn) (uint16, error)) (string, *xsserver.Server) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "xs.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv := xsserver.New(store, domid)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, xsserver.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock, srv
}

// raw is a wire-level test client.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, sock string) *raw {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *raw) send(typ xswire.Type, req, tx uint32, payload string) {
	r.t.Helper()
	if err := xswire.WriteMessage(r.c, xswire.Message{Type: typ, ReqID: req, TxID: tx, Payload: []byte(payload)}); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next message that is not a watch event.
func (r *raw) recv() xswire.Message {
	r.t.Helper()
	for {
		m, err := r.recvAny()
		if err != nil {
			r.t.Fatal(err)
		}
		if m.Type != xswire.WatchEvent {
			return m
		}
	}
}

func (r *raw) recvAny() (xswire.Message, error) {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return xswire.ReadMessage(r.br, xswire.PayloadMax)
}

// do sends a request and checks the reply's type, ids and payload.
func (r *raw) do(typ xswire.Type, req, tx uint32, payload string, wantType xswire.Type, wantPayload string) xswire.Message {
	r.t.Helper()
	r.send(typ, req, tx, payload)
	m := r.recv()
	if m.Type != wantType || m.ReqID != req || m.TxID != tx || (wantPayload != "*" && string(m.Payload) != wantPayload) {
		r.t.Fatalf("%s %q: got %s req %d tx %d %q; want %s req %d tx %d %q",
			typ, payload, m.Type, m.ReqID, m.TxID, m.Payload, wantType, req, tx, wantPayload)
	}
	return m
}

func TestWireReplies(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, nil)
	r := dialRaw(t, sock)
	E := xswire.Error

	r.do(xswire.Write, 1, 0, "/a/b\x00val", xswire.Write, "OK\x00")
	r.do(xswire.Read, 2, 0, "/a/b\x00", xswire.Read, "val") // no NUL added
	r.do(xswire.Write, 3, 0, "/a/c\x00", xswire.Write, "OK\x00")
	r.do(xswire.Read, 4, 0, "/a/c\x00", xswire.Read, "")
	m := r.do(xswire.Directory, 5, 0, "/a\x00", xswire.Directory, "*")
	if s := string(m.Payload); s != "b\x00c\x00" && s != "c\x00b\x00" {
		t.Fatalf("DIRECTORY payload %q", s)
	}
	r.do(xswire.Mkdir, 6, 0, "/a/d\x00", xswire.Mkdir, "OK\x00")
	r.do(xswire.GetPerms, 7, 0, "/a/b\x00", xswire.GetPerms, "n0\x00")
	r.do(xswire.SetPerms, 8, 0, "/a/b\x00n0\x00r3\x00", xswire.SetPerms, "OK\x00")
	r.do(xswire.GetPerms, 9, 0, "/a/b\x00", xswire.GetPerms, "n0\x00r3\x00")
	r.do(xswire.GetDomainPath, 10, 0, "3\x00", xswire.GetDomainPath, "/local/domain/3\x00")
	r.do(xswire.Read, 11, 0, "/nope\x00", E, "ENOENT\x00")
	r.do(xswire.Rm, 12, 0, "/a\x00", xswire.Rm, "OK\x00")
	r.do(xswire.Read, 13, 0, "/a/b\x00", E, "ENOENT\x00")

	// Transactions: the id is decimal with a NUL; requests carry it.
	m = r.do(xswire.TransactionStart, 20, 0, "\x00", xswire.TransactionStart, "*")
	ss, err := xswire.ExactStrings(m.Payload, 1)
	if err != nil {
		t.Fatalf("TRANSACTION_START payload %q", m.Payload)
	}
	id, err := strconv.ParseUint(ss[0], 10, 32)
	if err != nil || id == 0 {
		t.Fatalf("transaction id %q", ss[0])
	}
	tx := uint32(id)
	r.do(xswire.Write, 21, tx, "/t\x00in-tx", xswire.Write, "OK\x00")
	r.do(xswire.Read, 22, 0, "/t\x00", E, "ENOENT\x00")
	r.do(xswire.Read, 23, tx, "/t\x00", xswire.Read, "in-tx")
	r.do(xswire.TransactionEnd, 24, tx, "X\x00", E, "EINVAL\x00")
	r.do(xswire.TransactionEnd, 25, tx, "T\x00", xswire.TransactionEnd, "OK\x00")
	r.do(xswire.Read, 26, 0, "/t\x00", xswire.Read, "in-tx")
	r.do(xswire.TransactionEnd, 27, tx, "T\x00", E, "ENOENT\x00")
	r.do(xswire.Read, 28, 12345, "/t\x00", E, "ENOENT\x00")

	// Malformed payloads.
	r.do(xswire.Read, 30, 0, "/t", E, "EINVAL\x00")
	r.do(xswire.Read, 31, 0, "", E, "EINVAL\x00")
	r.do(xswire.Read, 32, 0, "/t\x00/u\x00", E, "EINVAL\x00")
	r.do(xswire.Write, 33, 0, "/t", E, "EINVAL\x00")
	r.do(xswire.Watch, 34, 0, "/t\x00", E, "EINVAL\x00")
	r.do(xswire.Watch, 35, 0, "/t\x00tok", E, "EINVAL\x00")
	r.do(xswire.SetPerms, 36, 0, "/t\x00", E, "EINVAL\x00")
	r.do(xswire.SetPerms, 37, 0, "/t\x00x0\x00", E, "EINVAL\x00")
	r.do(xswire.GetDomainPath, 38, 0, "abc\x00", E, "EINVAL\x00")
	r.do(xswire.TransactionStart, 39, 0, "x", E, "EINVAL\x00")
	r.do(xswire.Write, 40, 0, "bad//path\x00", E, "EINVAL\x00")

	// Unsupported types.
	for i, typ := range []xswire.Type{xswire.Control, xswire.DirectoryPart, xswire.Restrict, xswire.GetQuota, xswire.WatchEvent, xswire.Error, 99, xswire.Invalid} {
		r.do(typ, uint32(50+i), 0, "x\x00", E, "ENOSYS\x00")
	}
	// The connection is still fine.
	r.do(xswire.Read, 60, 0, "/t\x00", xswire.Read, "in-tx")
}

func TestWatchEventsOnWire(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, nil)
	r := dialRaw(t, sock)
	r.send(xswire.Watch, 1, 0, "/w\x00tok\x00")
	var gotReply, gotEvent bool
	for !gotReply || !gotEvent {
		m, err := r.recvAny()
		if err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case xswire.Watch:
			if m.ReqID != 1 || string(m.Payload) != "OK\x00" {
				t.Fatalf("reply %+v", m)
			}
			gotReply = true
		case xswire.WatchEvent:
			if m.ReqID != 0 || m.TxID != 0 || string(m.Payload) != "/w\x00tok\x00" {
				t.Fatalf("event %+v %q", m, m.Payload)
			}
			gotEvent = true
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	r.do(xswire.Watch, 2, 0, "/w\x00tok\x00", xswire.Error, "EEXIST\x00")
	// A depth argument is accepted.
	r.do(xswire.Watch, 3, 0, "/w2\x00tok\x001\x00", xswire.Watch, "OK\x00")
	r.do(xswire.Unwatch, 4, 0, "/w2\x00tok\x00", xswire.Unwatch, "OK\x00")

	r2 := dialRaw(t, sock)
	r2.do(xswire.Write, 1, 0, "/w/x\x00v", xswire.Write, "OK\x00")
	m, err := r.recvAny()
	// The /w2 watch's registration event may come after its reply (do
	// skips only the events before it): it is not the change event.
	if err == nil && m.Type == xswire.WatchEvent && string(m.Payload) == "/w2\x00tok\x00" {
		m, err = r.recvAny()
	}
	if err != nil || m.Type != xswire.WatchEvent || string(m.Payload) != "/w/x\x00tok\x00" {
		t.Fatalf("change event %+v %q %v", m, m.Payload, err)
	}

	// RESET_WATCHES drops the watch: after it, a change sends nothing.
	r.do(xswire.ResetWatches, 5, 0, "", xswire.ResetWatches, "OK\x00")
	r2.do(xswire.Write, 2, 0, "/w/y\x00v", xswire.Write, "OK\x00")
	r.do(xswire.Unwatch, 6, 0, "/w\x00tok\x00", xswire.Error, "ENOENT\x00")
}

func TestOversizedPayloadKillsConnection(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, nil)
	r := dialRaw(t, sock)
	r.do(xswire.Write, 1, 0, "/ok\x00"+strings.Repeat("x", xswire.PayloadMax-4), xswire.Write, "OK\x00")
	// Only the header of the oversized message: the server must not wait
	// for the payload before dropping the connection.
	if _, err := r.c.Write(xswire.AppendHeader(nil, xswire.Header{Type: xswire.Write, ReqID: 2, Len: xswire.PayloadMax + 1})); err != nil {
		t.Fatal(err)
	}
	if m, err := r.recvAny(); err != io.EOF {
		t.Fatalf("got %+v, %v; want EOF", m, err)
	}
	r = dialRaw(t, sock)
	r.c.Write(xswire.AppendHeader(nil, xswire.Header{Type: xswire.Read, ReqID: 1, Len: 0xffffffff}))
	if m, err := r.recvAny(); err != io.EOF {
		t.Fatalf("got %+v, %v; want EOF", m, err)
	}
}

func TestOversizedReplyIsE2BIG(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, nil)
	r := dialRaw(t, sock)
	name := strings.Repeat("n", 200)
	for i := 0; i < 25; i++ {
		r.do(xswire.Mkdir, uint32(i+1), 0, "/big/"+name+strconv.Itoa(i)+"\x00", xswire.Mkdir, "OK\x00")
	}
	r.do(xswire.Directory, 100, 0, "/big\x00", xswire.Error, "E2BIG\x00")
}

func TestPermissionsPerConnection(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	if err := store.IntroduceDomain(1); err != nil {
		t.Fatal(err)
	}
	sock0, _ := start(t, store, nil)
	sock1, _ := start(t, store, func(*net.UnixConn) (uint16, error) { return 1, nil })
	r0, r1 := dialRaw(t, sock0), dialRaw(t, sock1)
	r0.do(xswire.Write, 1, 0, "/p\x00v", xswire.Write, "OK\x00")
	r1.do(xswire.Read, 1, 0, "/p\x00", xswire.Error, "EACCES\x00")
	r1.do(xswire.Write, 2, 0, "x\x00v", xswire.Write, "OK\x00")
	r0.do(xswire.Read, 2, 0, "/local/domain/1/x\x00", xswire.Read, "v")
	r1.do(xswire.Introduce, 3, 0, "2\x000\x000\x00", xswire.Error, "EACCES\x00")
	r0.do(xswire.Introduce, 3, 0, "2\x000\x000\x00", xswire.Introduce, "OK\x00")
	r0.do(xswire.Read, 4, 0, "/local/domain/2/domid\x00", xswire.Read, "2")

	// Releasing dom1 ends its session; its connection is dropped.
	r0.do(xswire.Release, 5, 0, "1\x00", xswire.Release, "OK\x00")
	r1.send(xswire.Read, 4, 0, "x\x00")
	for {
		m, err := r1.recvAny()
		if err == io.EOF {
			break
		}
		if err != nil || m.Type != xswire.WatchEvent {
			t.Fatalf("after release: %+v %v", m, err)
		}
	}
}

func TestConnectionRefusedByDomidOf(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, func(*net.UnixConn) (uint16, error) { return 0, errors.New("no") })
	r := dialRaw(t, sock)
	_ = xswire.WriteMessage(r.c, xswire.Message{Type: xswire.Read, ReqID: 1, Payload: []byte("/\x00")})
	// The request may still be unread when the server hangs up, which
	// makes the close a reset.
	if _, err := r.recvAny(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestSlowEventReaderIsDisconnected(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, nil)
	slow := dialRaw(t, sock)
	if uc, ok := slow.c.(*net.UnixConn); ok {
		uc.SetReadBuffer(4096) // fill up sooner
	}
	slow.do(xswire.Watch, 1, 0, "/flood\x00tok\x00", xswire.Watch, "OK\x00")

	// Flood through the store directly: it must never block on the
	// client that does not read.
	writer := store.NewSession(0, nil)
	defer writer.Close()
	done := make(chan error, 1)
	go func() {
		val := []byte(strings.Repeat("v", 16))
		for i := 0; i < 50000; i++ {
			if err := writer.Write(0, "/flood/"+strconv.Itoa(i%100), val); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the store blocked on a client that does not read its events")
	}
	// Now the slow client finds its connection closed after what was
	// already buffered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		slow.c.SetReadDeadline(deadline)
		_, err := xswire.ReadMessage(slow.br, xswire.PayloadMax)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("slow client: %v, want EOF", err)
		}
	}
}

func TestCloseWaitsForConnections(t *testing.T) {
	base := runtime.NumGoroutine()
	store := xssim.NewStore(xssim.DefaultLimits())
	sock := filepath.Join(t.TempDir(), "xs.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv := xsserver.New(store, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	var conns []*raw
	for i := 0; i < 5; i++ {
		r := dialRaw(t, sock)
		r.do(xswire.Watch, 1, 0, "/c\x00t\x00", xswire.Watch, "OK\x00")
		conns = append(conns, r)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, xsserver.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	for _, r := range conns {
		for {
			if _, err := r.recvAny(); err != nil {
				if err != io.EOF {
					t.Fatalf("want EOF, got %v", err)
				}
				break
			}
		}
		r.c.Close()
	}
	// Serve after Close refuses at once.
	l2, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock + "2", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(l2); !errors.Is(err, xsserver.ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
