package vchanhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vchan-go/vchan/examples/internal/testenv"
	"github.com/vchan-go/vchan/vchan"
)

// port is the vchan port of the web server; the clients are domain 1, the
// server domain 0, so the rings live at /local/domain/0/data/vchan/1/web.
const port = "web"

// wantRemote is what the server sees as the client's address.
var wantRemote = "dom1:" + vchan.PortPath(0, 1, port)

// server is an http.Server on a vchan Listener, with its Serve running.
type server struct {
	srv   *http.Server
	ln    *countingListener
	serve chan error // Serve's result, once it returns
	once  sync.Once
}

// startServer listens for domain 1 on host with the given ring sizes and
// serves the echo handler.
func startServer(t *testing.T, host *vchan.Host, ringSize int) *server {
	t.Helper()
	vln, err := vchan.Listen(1, port, &vchan.Config{Host: host, ReadBufferSize: ringSize, WriteBufferSize: ringSize})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{
		srv:   &http.Server{Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 30 * time.Second},
		ln:    &countingListener{Listener: vln},
		serve: make(chan error, 1),
	}
	go func() { s.serve <- s.srv.Serve(s.ln) }()
	t.Cleanup(func() { s.shutdown(t) }) // if the test ended early
	return s
}

// running fails the test if Serve has returned.
func (s *server) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.serve:
		s.serve <- err
		t.Fatalf("Serve returned while it should be serving: %v", err)
	default:
	}
}

// shutdown stops the server and checks that Serve ran until then. Only
// the first call does anything.
func (s *server) shutdown(t *testing.T) {
	t.Helper()
	s.once.Do(func() { s.stop(t) })
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.serve:
		s.serve <- err
		t.Errorf("Serve returned before Shutdown: %v", err)
		s.ln.Close()
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-s.serve:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	case <-ctx.Done():
		t.Errorf("Serve did not return after Shutdown")
	}
}

// echo answers a POST with its body, the body's SHA-256 and the client's
// address. It checks the request first, so a wrong one fails loudly.
func echo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/echo" {
		http.Error(w, "want POST /echo", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	w.Header().Set("X-Sha256", hex.EncodeToString(sum[:]))
	w.Header().Set("X-Remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

// newClient returns an http.Client that reaches the vchan server in
// domain 0, whatever host name the URL has.
func newClient(t *testing.T, host *vchan.Host, keepAlive bool) *http.Client {
	d := &vchan.Dialer{Config: &vchan.Config{Host: host}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "vchan", "0:"+port)
		},
		DisableKeepAlives: !keepAlive,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// post sends request number seed (a body of its own, 1 byte to 32 KiB) and
// checks the answer: status, the echoed body, its checksum, the address.
func post(ctx context.Context, c *http.Client, seed uint64) error {
	body := testenv.Data(seed, 1+int(seed*7919%32768))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://vchan/echo", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("request %d: %w", seed, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("request %d: reading the body: %w", seed, err)
	}
	sum := sha256.Sum256(body)
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("request %d: %s: %q", seed, resp.Status, got)
	case !bytes.Equal(got, body):
		return fmt.Errorf("request %d: sent %d bytes, got %d back, not the same", seed, len(body), len(got))
	case resp.Header.Get("X-Sha256") != hex.EncodeToString(sum[:]):
		return fmt.Errorf("request %d: server's checksum %s, want %x", seed, resp.Header.Get("X-Sha256"), sum)
	case resp.Header.Get("X-Remote") != wantRemote:
		return fmt.Errorf("request %d: server saw the client as %q, want %q", seed, resp.Header.Get("X-Remote"), wantRemote)
	}
	return nil
}

// countingListener counts the connections it accepts and how many are
// open at once. A connection counts as closed just before its Close, so
// the count never exceeds the connections that really hold rings.
type countingListener struct {
	net.Listener
	accepted, open, maxOpen atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	n := l.open.Add(1)
	for {
		m := l.maxOpen.Load()
		if n <= m || l.maxOpen.CompareAndSwap(m, n) {
			break
		}
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

var hosts = []struct {
	name string
	pair func(testing.TB) testenv.Pair
}{
	{"sim", testenv.InProcess},
	{"simd", testenv.CrossProcess},
}

// TestHTTP: 200 requests on one keep-alive connection, 200 with a
// connection each, and 8 clients at once with 25 requests each, on the
// in-process simulator and across the vchan-simd daemon.
func TestHTTP(t *testing.T) {
	for _, h := range hosts {
		t.Run(h.name, func(t *testing.T) {
			testenv.CheckGoroutines(t)
			p := h.pair(t)
			ctx := testenv.Context(t, 2*time.Minute)

			t.Run("keepalive", func(t *testing.T) {
				s := startServer(t, p.Server, 65536)
				c := newClient(t, p.Client, true)
				for i := range 200 {
					if err := post(ctx, c, uint64(i)); err != nil {
						t.Fatal(err)
					}
				}
				c.CloseIdleConnections()
				s.shutdown(t)
				p.CheckReleased(t)
				if n := s.ln.accepted.Load(); n != 1 {
					t.Errorf("200 keep-alive requests used %d connections, want 1", n)
				}
			})

			t.Run("no-keepalive", func(t *testing.T) {
				s := startServer(t, p.Server, 65536)
				c := newClient(t, p.Client, false)
				for i := range 200 {
					if err := post(ctx, c, uint64(1000+i)); err != nil {
						t.Fatal(err)
					}
				}
				s.shutdown(t)
				p.CheckReleased(t)
				if n := s.ln.accepted.Load(); n != 200 {
					t.Errorf("200 requests without keep-alive used %d connections, want 200", n)
				}
			})

			t.Run("8-clients", func(t *testing.T) {
				s := startServer(t, p.Server, 65536)
				errs := make(chan error, 8)
				for g := range 8 {
					c := newClient(t, p.Client, true)
					go func() {
						defer c.CloseIdleConnections()
						for i := range 25 {
							if err := post(ctx, c, uint64(10000+100*g+i)); err != nil {
								errs <- fmt.Errorf("client %d: %w", g, err)
								return
							}
						}
						errs <- nil
					}()
				}
				for range 8 {
					if err := testenv.Wait(t, ctx, errs, "the clients"); err != nil {
						t.Error(err)
					}
				}
				s.shutdown(t)
				p.CheckReleased(t)
				if n := s.ln.accepted.Load(); n != 8 {
					t.Errorf("8 keep-alive clients used %d connections, want 8", n)
				}
			})
		})
	}
}
