//go:build linux

package interop

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
)

// Tests of our netcat, cmd/vchan-cat, against Debian's vchan-socket-proxy,
// in both roles. vchan-socket-proxy has no option for the ring sizes
// (usage: -m client|server, -s state-path, -v): as the server it always
// asks libxenvchan_server_init for its defaults; so the ring sizes vary only
// where vchan-cat serves (-r, -w).
//
// The data is a request/response: n random bytes one way, and back each
// byte XORed with catXor, then the SHA-256 of the n bytes as received. So a
// byte lost, duplicated or reordered in either direction fails the test.

// catTimeout bounds every process of these tests (exec.CommandContext).
const catTimeout = 60 * time.Second

const catXor = 0xA5

// catPkg is vchan-cat, built once (testutil.BuildCmd).
const catPkg = "github.com/vchan-go/vchan/cmd/vchan-cat"

// startVchanCat runs vchan-cat as simulated domain domid, with -v.
func startVchanCat(t testing.TB, e *env, domid uint16, args ...string) *testutil.Proc {
	t.Helper()
	bin := testutil.BuildCmd(t, catPkg)
	args = append([]string{"-host", "sim", "-sim-dir", e.dir, "-domid", strconv.Itoa(int(domid)), "-v"}, args...)
	return startProc(t, os.Environ(), "", catTimeout, bin, args...)
}

// startProxy runs Debian's vchan-socket-proxy as domain domid.
func startProxy(t testing.TB, e *env, domid uint16, args ...string) *testutil.Proc {
	t.Helper()
	return startProc(t, e.cEnv(domid), "", catTimeout, filepath.Join(e.root, proxyPath), args...)
}

// catServeXor answers one request on c: it reads n bytes, writing each back
// XORed with catXor as it arrives, then their SHA-256; then it wants EOF.
func catServeXor(c net.Conn, n int) error {
	if err := c.SetDeadline(time.Now().Add(catTimeout)); err != nil {
		return err
	}
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for got := 0; got < n; {
		k, err := c.Read(buf[:min(len(buf), n-got)])
		h.Write(buf[:k])
		got += k
		for i := range buf[:k] {
			buf[i] ^= catXor
		}
		if _, werr := c.Write(buf[:k]); werr != nil {
			return fmt.Errorf("xor server: write after %d bytes: %w", got, werr)
		}
		if err != nil {
			return fmt.Errorf("xor server: after %d of %d bytes: %w", got, n, err)
		}
	}
	if _, err := c.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("xor server: write checksum: %w", err)
	}
	if k, err := c.Read(buf); k != 0 || !isEOF(err) {
		return fmt.Errorf("xor server: after the request: %d bytes, %v; want EOF", k, err)
	}
	return nil
}

// catAcceptXor accepts one connection on l and serves it with catServeXor.
// The result arrives on the channel.
func catAcceptXor(l net.Listener, n int) <-chan error {
	res := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			res <- fmt.Errorf("xor server: accept: %w", err)
			return
		}
		defer c.Close()
		res <- catServeXor(c, n)
	}()
	return res
}

// catRequest sends n random bytes to w and reads the XOR server's answer
// from r, checking both the bytes and the checksum.
func catRequest(w io.Writer, r io.Reader, n int, seed uint64) error {
	var sent, back [32]byte
	var tail [32]byte
	var fe firstErr
	fe.Go(func() (err error) {
		sent, err = randomStream(w, n, seed)
		return err
	})
	fe.Go(func() error {
		h := sha256.New()
		if got, err := io.CopyN(xorWriter{h}, r, int64(n)); err != nil {
			return fmt.Errorf("response: after %d of %d bytes: %w", got, n, err)
		}
		back = [32]byte(h.Sum(nil))
		if _, err := io.ReadFull(r, tail[:]); err != nil {
			return fmt.Errorf("response: reading the checksum: %w", err)
		}
		return nil
	})
	if err := fe.Wait(); err != nil {
		return err
	}
	if back != sent {
		return fmt.Errorf("the %d bytes that came back differ from those sent", n)
	}
	if tail != sent {
		return fmt.Errorf("the far end's checksum of the %d bytes differs from that of the bytes sent", n)
	}
	return nil
}

// xorWriter undoes the XOR server's transformation.
type xorWriter struct{ w io.Writer }

func (x xorWriter) Write(p []byte) (int, error) {
	q := make([]byte, len(p))
	for i, b := range p {
		q[i] = b ^ catXor
	}
	return x.w.Write(q)
}

// catRings parses vchan-cat's -v line "... (rings: A in, B out) ...".
func catRings(line string) string {
	i := strings.Index(line, "(rings: ")
	if i < 0 {
		return ""
	}
	s := line[i+len("(rings: "):]
	if j := strings.IndexByte(s, ')'); j >= 0 {
		s = s[:j]
	}
	return s
}

// catSize formats a ring size as vchan-cat -v does.
func catSize(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// TestCatClientSocketProxyServer: vchan-socket-proxy -m server serves the
// vchan and bridges it to a unix socket where the test runs the XOR
// server; vchan-cat is the vchan client, stdin -> vchan -> stdout.
func TestCatClientSocketProxyServer(t *testing.T) {
	e := getEnv(t)
	const n = 4 << 20
	pdom, cdom := newDom(), newDom()
	sock := filepath.Join(e.tmp, fmt.Sprintf("cps%d.sock", pdom))
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	path := vpath(pdom, cdom, "cat")
	proxy := startProxy(t, e, pdom, "-m", "server", strconv.Itoa(int(cdom)), path, sock)
	xor := catAcceptXor(ul, n)
	cat := startVchanCat(t, e, cdom, "-t", "10s", strconv.Itoa(int(pdom)), path)
	t.Logf("vchan-socket-proxy's rings, as vchan-cat sees them: %s", catRings(cat.WaitLine("vchan-cat: connected", 10*time.Second)))

	if err := catRequest(cat.Stdin, cat.Stdout, n, 11); err != nil {
		t.Fatal(err)
	}
	// The end of stdin: vchan-cat closes the vchan once the proxy has read
	// everything, and exits 0; the proxy closes the unix connection.
	cat.Stdin.Close()
	if err := cat.Wait(10 * time.Second); err != nil {
		t.Fatalf("vchan-cat: %v", err)
	}
	if extra, err := io.ReadAll(cat.Stdout); err != nil || len(extra) != 0 {
		t.Fatalf("vchan-cat's stdout after the response: %d more bytes, %v", len(extra), err)
	}
	select {
	case err := <-xor:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unix side got no EOF within 10 s of vchan-cat's exit")
	}
	cat.WaitLine("vchan-cat: closed", time.Second)
	if proxy.Exited() {
		t.Fatalf("vchan-socket-proxy exited (%v); it should wait for the next client", proxy.Err())
	}
}

// catServerCases are vchan-cat's -r and -w as the server, and the bytes of
// the request: smaller with small rings (every event is a daemon round trip).
var catServerCases = []struct {
	ringCase
	bytes int
}{
	{ringCase{1024, 2048}, 512 << 10},
	{ringCase{65536, 65536}, 4 << 20}, // vchan-cat's default
	{ringCase{1 << 20, 4096}, 4 << 20},
}

// TestCatServerSocketProxyClient: vchan-cat -l serves the vchan;
// vchan-socket-proxy -m client listens on a unix socket and dials the vchan
// for the test's connection. Two local ends for vchan-cat:
//
//	stdio   the test sends the request on vchan-cat's stdin and reads the
//	        answer on its stdout; the XOR server is on the proxy's socket
//	bridge  vchan-cat -unix-connect to the test's XOR server; the test sends
//	        the request on the proxy's socket
func TestCatServerSocketProxyClient(t *testing.T) {
	e := getEnv(t)
	testutil.BuildCmd(t, catPkg) // before the parallel subtests and their timeouts
	for _, sc := range catServerCases {
		for _, mode := range []string{"stdio", "bridge"} {
			t.Run(sc.String()+"/"+mode, func(t *testing.T) {
				t.Parallel()
				n := sc.bytes
				cdom, pdom := newDom(), newDom()
				path := vpath(cdom, pdom, "cat")
				args := []string{"-l", "-r", strconv.Itoa(sc.read), "-w", strconv.Itoa(sc.write)}
				var xor <-chan error
				if mode == "bridge" {
					xsock := filepath.Join(e.tmp, fmt.Sprintf("cx%d.sock", cdom))
					xl, err := net.Listen("unix", xsock)
					if err != nil {
						t.Fatal(err)
					}
					defer xl.Close()
					xor = catAcceptXor(xl, n)
					args = append(args, "-unix-connect", xsock)
				}
				cat := startVchanCat(t, e, cdom, append(args, strconv.Itoa(int(pdom)), path)...)
				cat.WaitLine("vchan-cat: listening on", 10*time.Second)

				psock := filepath.Join(e.tmp, fmt.Sprintf("cpc%d.sock", pdom))
				proxy := startProxy(t, e, pdom, "-m", "client", strconv.Itoa(int(cdom)), path, psock)
				var u net.Conn
				var err error
				for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
					if u, err = net.Dial("unix", psock); err == nil {
						break
					}
					if time.Since(start) > 10*time.Second || proxy.Exited() {
						t.Fatalf("vchan-socket-proxy does not listen on %s: %v", psock, err)
					}
				}
				defer u.Close()
				if err := u.SetDeadline(time.Now().Add(catTimeout)); err != nil {
					t.Fatal(err)
				}
				line := cat.WaitLine("vchan-cat: connected", 10*time.Second)
				if got, want := catRings(line), catSize(sc.read)+" in, "+catSize(sc.write)+" out"; got != want {
					t.Errorf("vchan-cat -r %d -w %d reports rings %q, want %q", sc.read, sc.write, got, want)
				}

				switch mode {
				case "stdio":
					xc := make(chan error, 1)
					go func() { xc <- catServeXor(u, n) }()
					xor = xc
					if err := catRequest(cat.Stdin, cat.Stdout, n, 21); err != nil {
						t.Fatal(err)
					}
					// The end of stdin: vchan-cat closes the vchan once the
					// proxy has read everything, and the proxy closes u.
					cat.Stdin.Close()
				case "bridge":
					if err := catRequest(u, u, n, 22); err != nil {
						t.Fatal(err)
					}
					// The unix client leaves: the proxy closes the vchan,
					// vchan-cat closes its connection to the XOR server.
					u.Close()
				}
				if err := cat.Wait(10 * time.Second); err != nil {
					t.Fatalf("vchan-cat: %v", err)
				}
				select {
				case err := <-xor:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the XOR server got no EOF within 10 s of vchan-cat's exit")
				}
				if extra, err := io.ReadAll(cat.Stdout); err != nil || len(extra) != 0 {
					t.Fatalf("vchan-cat's stdout: %d bytes too many, %v", len(extra), err)
				}
				if proxy.Exited() {
					t.Errorf("vchan-socket-proxy exited (%v); it should wait for the next unix client", proxy.Err())
				}
			})
		}
	}
}
