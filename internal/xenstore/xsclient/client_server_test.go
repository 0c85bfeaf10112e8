package xsclient_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
	"github.com/vchan-go/vchan/internal/xenstore/xsserver"
	"github.com/vchan-go/vchan/internal/xenstore/xssim"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// serve starts a server for store on a fresh socket in a temp dir, every
// connection acting as domid, and returns the socket path and a function
// that stops the server (also run at cleanup).
func serve(t *testing.T, store *xssim.Store, domid uint16) (string, func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "xs.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv := xsserver.New(store, func(*net.UnixConn) (uint16, error) { return domid, nil })
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := srv.Close(); err != nil {
				t.Errorf("server Close: %v", err)
			}
			if err := <-done; !errors.Is(err, xsserver.ErrServerClosed) {
				t.Errorf("Serve returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

func dial(t *testing.T, sock string) *xsclient.Client {
	t.Helper()
	c, err := xsclient.DialSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantErrno(t *testing.T, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	var xe *xenstore.Error
	if !errors.As(err, &xe) {
		t.Fatalf("error %T %v is not a *xenstore.Error", err, err)
	}
}

func nextEvent(t *testing.T, w xenstore.Watch) string {
	t.Helper()
	select {
	case p, ok := <-w.Events():
		if !ok {
			t.Fatal("watch channel closed")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
	return ""
}

func TestEveryOp(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := serve(t, store, 0)
	c := dial(t, sock)

	if err := c.Write("/a/b", []byte("hello\x00world")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Read("/a/b")
	if err != nil || string(v) != "hello\x00world" {
		t.Fatalf("Read = %q, %v", v, err)
	}
	if v, err := c.Read("/a"); err != nil || len(v) != 0 {
		t.Fatalf("parent created with %q, %v", v, err)
	}
	if err := c.Write("/a/empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read("/a/empty"); err != nil || len(v) != 0 {
		t.Fatalf("empty value %q %v", v, err)
	}
	if err := c.Mkdir("/a/dir/sub"); err != nil {
		t.Fatal(err)
	}
	names, err := c.Directory("/a")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"b", "dir", "empty"}) {
		t.Fatalf("Directory = %q, %v", names, err)
	}
	if names, err := c.Directory("/a/dir/sub"); err != nil || len(names) != 0 {
		t.Fatalf("empty Directory = %q, %v", names, err)
	}
	_, err = c.Read("/nope")
	wantErrno(t, err, syscall.ENOENT)

	perms := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 5, Access: xenstore.AccessRead}}
	if err := c.SetPerms("/a/b", perms); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetPerms("/a/b")
	if err != nil || !slices.Equal(got, perms) {
		t.Fatalf("GetPerms = %v, %v", got, err)
	}
	wantErrno(t, c.SetPerms("/a/b", nil), syscall.EINVAL)

	// Relative paths resolve against dom0's home.
	if err := c.Write("rel", []byte("r")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read("/local/domain/0/rel"); err != nil || string(v) != "r" {
		t.Fatalf("relative write landed elsewhere: %q %v", v, err)
	}

	dp, err := c.DomainPath(7)
	if err != nil || dp != "/local/domain/7" {
		t.Fatalf("DomainPath = %q, %v", dp, err)
	}

	if err := c.Rm("/a"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read("/a/b")
	wantErrno(t, err, syscall.ENOENT)
	if err := c.Rm("/a"); err != nil {
		t.Fatalf("Rm of absent node with a parent: %v", err)
	}

	// Oversized and unsendable requests are refused locally.
	wantErrno(t, c.Write("/big", make([]byte, xswire.PayloadMax)), syscall.E2BIG)
	wantErrno(t, c.Write("/x\x00y", nil), syscall.EINVAL)
	// The connection survived both: they were never sent.
	if err := c.Write("/after", []byte("1")); err != nil {
		t.Fatalf("connection unusable after refused requests: %v", err)
	}
	// The largest value that fits is accepted by the store's wire limit
	// (dom0 has no node-size quota).
	big := bytes.Repeat([]byte{'v'}, xswire.PayloadMax-len("/big")-1)
	if err := c.Write("/big", big); err != nil {
		t.Fatalf("write at the payload limit: %v", err)
	}
	if v, err := c.Read("/big"); err != nil || !bytes.Equal(v, big) {
		t.Fatalf("read at the payload limit: %d bytes, %v", len(v), err)
	}
	// Invalid paths come back from the server as EINVAL.
	wantErrno(t, c.Write("/bad//path", nil), syscall.EINVAL)
}

func TestConcurrentRequests(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := serve(t, store, 0)
	c := dial(t, sock)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				p := fmt.Sprintf("/c/%d/%d", g, i)
				val := []byte(p)
				if err := c.Write(p, val); err != nil {
					errs <- err
					return
				}
				v, err := c.Read(p)
				if err != nil || !bytes.Equal(v, val) {
					errs <- fmt.Errorf("read %s = %q, %v", p, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPermissionsAsDom1(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	if err := store.IntroduceDomain(1); err != nil {
		t.Fatal(err)
	}
	sock0, _ := serve(t, store, 0)
	sock1, _ := serve(t, store, 1)
	c0, c1 := dial(t, sock0), dial(t, sock1)

	if err := c0.Write("/secret", []byte("s")); err != nil {
		t.Fatal(err)
	}
	_, err := c1.Read("/secret")
	wantErrno(t, err, syscall.EACCES)
	wantErrno(t, c1.Write("/secret", []byte("x")), syscall.EACCES)
	wantErrno(t, c1.Write("/elsewhere", []byte("x")), syscall.EACCES)

	if err := c0.SetPerms("/secret", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}}); err != nil {
		t.Fatal(err)
	}
	if v, err := c1.Read("/secret"); err != nil || string(v) != "s" {
		t.Fatalf("dom1 read with r1: %q %v", v, err)
	}
	wantErrno(t, c1.Write("/secret", []byte("x")), syscall.EACCES)

	// Its home is its own; relative paths land there.
	if err := c1.Write("data/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	perms, err := c0.GetPerms("/local/domain/1/data/x")
	if err != nil || len(perms) == 0 || perms[0].Domain != 1 {
		t.Fatalf("perms of dom1's node: %v %v", perms, err)
	}
	// dom1 cannot give its node away.
	wantErrno(t, c1.SetPerms("data/x", []xenstore.Perm{{Domain: 2, Access: xenstore.AccessNone}}), syscall.EPERM)
}

func TestTransactions(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := serve(t, store, 0)
	c, other := dial(t, sock), dial(t, sock)

	if err := c.Write("/t/v", []byte("0")); err != nil {
		t.Fatal(err)
	}
	// Writes inside a transaction are invisible until commit.
	tx, err := c.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Write("/t/new", []byte("n")); err != nil {
		t.Fatal(err)
	}
	_, err = other.Read("/t/new")
	wantErrno(t, err, syscall.ENOENT)
	if v, err := tx.Read("/t/new"); err != nil || string(v) != "n" {
		t.Fatalf("tx read own write %q %v", v, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if v, err := other.Read("/t/new"); err != nil || string(v) != "n" {
		t.Fatalf("after commit %q %v", v, err)
	}
	wantErrno(t, tx.Commit(), syscall.EINVAL) // already ended
	_, err = tx.Read("/t/v")
	wantErrno(t, err, syscall.EINVAL)

	// Abort discards.
	tx, _ = c.Begin()
	_ = tx.Write("/t/aborted", []byte("a"))
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	_, err = other.Read("/t/aborted")
	wantErrno(t, err, syscall.ENOENT)

	// A conflicting commit is EAGAIN.
	tx, _ = c.Begin()
	if _, err := tx.Read("/t/v"); err != nil {
		t.Fatal(err)
	}
	if err := other.Write("/t/v", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Write("/t/v", []byte("mine")); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, tx.Commit(), syscall.EAGAIN)
	if v, _ := other.Read("/t/v"); string(v) != "other" {
		t.Fatalf("conflicting commit applied: %q", v)
	}

	// xenstore.Update retries through the conflict.
	attempts := 0
	err = xenstore.Update(c, func(tx xenstore.Ops) error {
		attempts++
		v, err := tx.Read("/t/v")
		if err != nil {
			return err
		}
		if attempts == 1 {
			if err := other.Write("/t/v", []byte("interfere")); err != nil {
				return err
			}
		}
		return tx.Write("/t/v", append(v, '+'))
	})
	if err != nil || attempts != 2 {
		t.Fatalf("Update: %v after %d attempts", err, attempts)
	}
	if v, _ := other.Read("/t/v"); string(v) != "interfere+" {
		t.Fatalf("after Update %q", v)
	}
}

func TestWatches(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := serve(t, store, 0)
	c, other := dial(t, sock), dial(t, sock)

	w, err := c.Watch("/w")
	if err != nil {
		t.Fatal(err)
	}
	if p := nextEvent(t, w); p != "/w" {
		t.Fatalf("registration event %q", p)
	}
	if err := other.Write("/w/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if p := nextEvent(t, w); p != "/w/x" {
		t.Fatalf("change event %q", p)
	}
	// Two watches on one path are told apart by their tokens.
	w2, err := c.Watch("/w")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w2)
	if err := other.Rm("/w"); err != nil {
		t.Fatal(err)
	}
	if p := nextEvent(t, w); p != "/w" {
		t.Fatalf("rm event %q", p)
	}
	if p := nextEvent(t, w2); p != "/w" {
		t.Fatalf("rm event on second watch %q", p)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Events(); ok {
		// A late event may still be buffered; the channel must then close.
		for range w.Events() {
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	rd, err := c.Watch("@releaseDomain")
	if err != nil {
		t.Fatal(err)
	}
	if p := nextEvent(t, rd); p != "@releaseDomain" {
		t.Fatalf("special registration event %q", p)
	}

	// Client Close closes the remaining watches' channels.
	c.Close()
	for _, ch := range []<-chan string{w2.Events(), rd.Events()} {
		deadline := time.After(5 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-deadline:
				t.Fatal("watch channel not closed by client Close")
			}
		}
	}
}

func TestWatchCoalescing(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := serve(t, store, 0)
	c := dial(t, sock)
	w, err := c.Watch("/co")
	if err != nil {
		t.Fatal(err)
	}
	// Fill far beyond the buffer without receiving.
	for i := 0; i < 200; i++ {
		if err := c.Write("/co/"+strconv.Itoa(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Receive until the events stop.
	var last string
	n := 0
	for idle := false; !idle; {
		select {
		case p := <-w.Events():
			last = p
			n++
		case <-time.After(500 * time.Millisecond):
			idle = true
		}
	}
	if n == 0 || n > 201 {
		t.Fatalf("received %d events", n)
	}
	if last != "/co" && last != "/co/199" {
		t.Fatalf("the last event %q does not cover the last change", last)
	}
}

func TestServerCloseFailsClient(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, stop := serve(t, store, 0)
	c := dial(t, sock)
	w, err := c.Watch("/x")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)
	stop()
	start := time.Now()
	// The watch channel closes when the connection is lost.
	for range w.Events() {
	}
	_, err = c.Read("/x")
	if !errors.Is(err, xsclient.ErrConnectionLost) {
		t.Fatalf("after server close: %v", err)
	}
	var xe *xenstore.Error
	if !errors.As(err, &xe) || xe.Op != "read" {
		t.Fatalf("error %#v", err)
	}
	if _, err := c.Begin(); !errors.Is(err, xsclient.ErrConnectionLost) {
		t.Fatalf("Begin after loss: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing took %v", d)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after loss: %v", err)
	}
}

// silentServer accepts one connection and reads requests without ever
// answering; closing the returned listener's connection simulates a daemon
// dying with requests outstanding.
func silentServer(t *testing.T) (sock string, got chan xswire.Message, kill func()) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "silent.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	got = make(chan xswire.Message, 16)
	connCh := make(chan net.Conn, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		l.Close()
		if err != nil {
			return
		}
		connCh <- conn
		for {
			m, err := xswire.ReadMessage(conn, xswire.PayloadMax)
			if err != nil {
				return
			}
			got <- m
		}
	}()
	kill = func() {
		l.Close()
		select {
		case conn := <-connCh:
			conn.Close()
		default:
		}
		<-done
	}
	t.Cleanup(kill)
	return sock, got, kill
}

func TestDaemonDeathFailsPendingCall(t *testing.T) {
	sock, got, kill := silentServer(t)
	c := dial(t, sock)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read("/pending")
		errc <- err
	}()
	select {
	case m := <-got:
		if m.Type != xswire.Read || string(m.Payload) != "/pending\x00" || m.ReqID == 0 {
			t.Fatalf("request %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request never arrived")
	}
	kill()
	select {
	case err := <-errc:
		if !errors.Is(err, xsclient.ErrConnectionLost) {
			t.Fatalf("pending call: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending call not failed after EOF")
	}
	if err := c.Write("/later", nil); !errors.Is(err, xsclient.ErrConnectionLost) {
		t.Fatalf("later call: %v", err)
	}
}

func TestClientCloseFailsPendingCall(t *testing.T) {
	sock, got, _ := silentServer(t)
	c := dial(t, sock)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Directory("/pending")
		errc <- err
	}()
	<-got
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, xsclient.ErrClosed) {
			t.Fatalf("pending call: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending call not failed by Close")
	}
	if _, err := c.Read("/x"); !errors.Is(err, xsclient.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		store := xssim.NewStore(xssim.DefaultLimits())
		sock := filepath.Join(t.TempDir(), "leak.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		srv := xsserver.New(store, nil)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(l) }()
		var clients []*xsclient.Client
		for i := 0; i < 4; i++ {
			c, err := xsclient.DialSocket(sock)
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			w, err := c.Watch("/leak")
			if err != nil {
				t.Fatal(err)
			}
			nextEvent(t, w)
			if _, err := c.Begin(); err != nil {
				t.Fatal(err)
			}
			if err := c.Write("/leak/"+strconv.Itoa(i), nil); err != nil {
				t.Fatal(err)
			}
		}
		clients[0].Close() // one closed by the client, the rest by the server
		srv.Close()
		<-done
		for _, c := range clients {
			c.Close()
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDial(t *testing.T) {
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := serve(t, store, 0)

	// $XENSTORED_PATH naming a socket.
	t.Setenv("XENSTORED_PATH", sock)
	c, err := xsclient.Dial()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write("/dial", []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// $XENSTORED_RUNDIR/socket.
	dir := t.TempDir()
	if err := os.Symlink(sock, filepath.Join(dir, "socket")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XENSTORED_PATH", "")
	t.Setenv("XENSTORED_RUNDIR", dir)
	c, err = xsclient.Dial()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read("/dial"); err != nil || string(v) != "1" {
		t.Fatalf("via rundir: %q %v", v, err)
	}
	c.Close()

	// Nothing there: an error, not a hang.
	t.Setenv("XENSTORED_PATH", filepath.Join(dir, "absent"))
	if c, err := xsclient.Dial(); err == nil {
		c.Close()
		t.Fatal("Dial succeeded with nothing to connect to")
	}
}
