//go:build linux

package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
)

func TestMain(m *testing.M) {
	os.Exit(testutil.Run(m))
}

// catBin is the vchan-cat under test, built once (testutil.BuildCmd).
func catBin(t *testing.T) string {
	t.Helper()
	return testutil.BuildCmd(t, "github.com/vchan-go/vchan/cmd/vchan-cat")
}

// procTimeout bounds every process a test starts.
const procTimeout = 90 * time.Second

// newProc prepares bin with args, without the VCHAN_ variables of the
// test's environment, killed after procTimeout.
func newProc(t *testing.T, bin string, args ...string) *testutil.Proc {
	p := testutil.NewProc(t, bin, args...)
	p.Timeout = procTimeout
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VCHAN_") {
			env = append(env, kv)
		}
	}
	p.Cmd.Env = env
	return p
}

// cat prepares a vchan-cat as domain domid of the simulator in dir.
func cat(t *testing.T, dir string, domid int, args ...string) *testutil.Proc {
	return newProc(t, catBin(t), append([]string{"-host", "sim", "-sim-dir", dir, "-domid", fmt.Sprint(domid)}, args...)...)
}

// oneLine fails the test unless p wrote exactly one line on stderr,
// matching each of the wanted regular expressions.
func oneLine(t *testing.T, p *testutil.Proc, want ...string) {
	t.Helper()
	s := p.Stderr.String()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.HasPrefix(s, "vchan-cat: ") {
		t.Fatalf("%s: want one line on stderr, got:\n%s", p.Name, s)
	}
	for _, w := range want {
		if !regexp.MustCompile(w).MatchString(s) {
			t.Errorf("%s: stderr %q does not match %q", p.Name, s, w)
		}
	}
}

// vchanNodes lists what is left in xenstore under dom0's vchans for
// domain 1.
func vchanNodes(t *testing.T, dir string) []string {
	t.Helper()
	names, err := testutil.Xenstore(t, dir, 0).Directory("/local/domain/0/data/vchan/1")
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatal(err)
	}
	return names
}

func noVchanNodes(t *testing.T, dir string) {
	t.Helper()
	if names := vchanNodes(t, dir); len(names) != 0 {
		t.Errorf("xenstore still has /local/domain/0/data/vchan/1/%v", names)
	}
}

// TestTransfer100MiB sends 100 MiB of pseudo-random data from a client to a
// server and compares hashes.
func TestTransfer100MiB(t *testing.T) {
	const total = 100 << 20
	_, dir := testutil.StartSimd(t, "")
	srv := cat(t, dir, 0, "-l", "1", "bulk")
	srvIn, srvOut := srv.Pipes()
	srvIn.Close()
	srv.Start()
	cli := cat(t, dir, 1, "-t", "10s", "0", "bulk")
	cliIn, cliOut := cli.Pipes()
	cliOut.Close()
	cli.Start()

	start := time.Now()
	recvHash := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, srvOut)
		recvHash <- h.Sum(nil)
	}()
	sent := sha256.New()
	rng := rand.NewChaCha8([32]byte{'v', 'c', 'h', 'a', 'n'})
	buf := make([]byte, 256<<10)
	for n := 0; n < total; n += len(buf) {
		rng.Read(buf)
		sent.Write(buf)
		if _, err := cliIn.Write(buf); err != nil {
			t.Fatalf("writing to the client: %v; client stderr:\n%s", err, cli.Stderr.String())
		}
	}
	cliIn.Close()
	cli.MustExit(30*time.Second, 0)
	srv.MustExit(5*time.Second, 0)
	var got []byte
	select {
	case got = <-recvHash:
	case <-time.After(5 * time.Second):
		t.Fatal("the server's output did not end")
	}
	d := time.Since(start)
	if want := sent.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("sha256 received %x, sent %x", got, want)
	}
	t.Logf("100 MiB in %v: %.0f MiB/s", d.Round(time.Millisecond), float64(total>>20)/d.Seconds())
	if s := srv.Stderr.String() + cli.Stderr.String(); s != "" {
		t.Errorf("unexpected stderr:\n%s", s)
	}
	noVchanNodes(t, dir)
}

// readLine reads one line from r within a bounded time.
func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	c := make(chan result, 1)
	go func() {
		s, err := r.ReadString('\n')
		c <- result{s, err}
	}()
	select {
	case res := <-c:
		if res.err != nil {
			t.Fatalf("reading a line: %q, %v", res.s, res.err)
		}
		return res.s
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
	}
	return ""
}

func TestExec(t *testing.T) {
	t.Run("request-reply", func(t *testing.T) {
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "1", "p", "-e", `read x; echo "got $x from $VCHAN_REMOTE_ADDR"`)
		srv.Start()
		cli := cat(t, dir, 1, "-t", "10s", "-q", "-1", "0", "p")
		cli.Cmd.Stdin = strings.NewReader("hello\n")
		var out bytes.Buffer
		cli.Cmd.Stdout = &out
		cli.Start()
		cli.MustExit(10*time.Second, 0)
		srv.MustExit(5*time.Second, 0)
		if want := "got hello from dom1:/local/domain/0/data/vchan/1/p\n"; out.String() != want {
			t.Errorf("client got %q, want %q", out.String(), want)
		}
		noVchanNodes(t, dir)
	})
	t.Run("echo", func(t *testing.T) {
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "1", "p", "-e", "cat")
		srv.Start()
		cli := cat(t, dir, 1, "-t", "10s", "0", "p")
		in, out := cli.Pipes()
		cli.Start()
		r := bufio.NewReader(out)
		for _, msg := range []string{"ping\n", "pong\n", strings.Repeat("x", 100000) + "\n"} {
			if _, err := io.WriteString(in, msg); err != nil {
				t.Fatal(err)
			}
			if got := readLine(t, r); got != msg {
				t.Fatalf("echoed %.40q..., want %.40q...", got, msg)
			}
		}
		in.Close()
		cli.MustExit(10*time.Second, 0)
		srv.MustExit(5*time.Second, 0)
	})
	t.Run("client-side", func(t *testing.T) {
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "1", "p")
		in, out := srv.Pipes()
		srv.Start()
		cli := cat(t, dir, 1, "-t", "10s", "0", "p", "-e", `echo hi; read y; echo "bye $y"`)
		cli.Start()
		r := bufio.NewReader(out)
		if got := readLine(t, r); got != "hi\n" {
			t.Fatalf("got %q", got)
		}
		io.WriteString(in, "you\n")
		if got := readLine(t, r); got != "bye you\n" {
			t.Fatalf("got %q", got)
		}
		cli.MustExit(10*time.Second, 0)
		srv.MustExit(5*time.Second, 0)
		in.Close()
	})
}

// echoServer serves network/addr, echoing every connection.
func echoServer(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l
}

// TestBridge runs a local client → (-unix-listen|-tcp-listen) vchan-cat
// → vchan → vchan-cat -l (-unix-connect|-tcp-connect) → echo server chain,
// so each bridge carries data both ways.
func TestBridge(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			_, dir := testutil.StartSimd(t, "")
			var echoAddr, listenAddr string
			if network == "unix" {
				echoAddr, listenAddr = filepath.Join(dir, "echo.sock"), filepath.Join(dir, "front.sock")
			} else {
				echoAddr, listenAddr = "127.0.0.1:0", "127.0.0.1:0"
			}
			echo := echoServer(t, network, echoAddr)
			srv := cat(t, dir, 0, "-l", "-k", "1", "br", "-"+network+"-connect", echo.Addr().String())
			srv.Start()
			cli := cat(t, dir, 1, "-t", "10s", "-v", "-k", "-"+network+"-listen", listenAddr, "0", "br")
			cli.Start()
			listening := regexp.MustCompile(`listening on ` + network + ` (\S+);`)
			front := listening.FindStringSubmatch(cli.WaitFor(listening.String(), listening.MatchString, 10*time.Second))[1]

			// Several local clients, two at a time, each doing request and
			// reply rounds and a bulk echo of 1 MiB.
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for i := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- bridgeClient(network, front, i)
				}()
				if i%2 == 1 {
					wg.Wait()
				}
			}
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			for _, p := range []*testutil.Proc{cli, srv} {
				p.Signal(syscall.SIGTERM)
				p.MustExit(5*time.Second, 128+int(syscall.SIGTERM))
			}
			if strings.Contains(srv.Stderr.String(), "vchan-cat:") {
				t.Errorf("server stderr:\n%s", srv.Stderr.String())
			}
			noVchanNodes(t, dir)
			if network == "unix" {
				if _, err := os.Stat(listenAddr); err == nil {
					t.Errorf("%s left behind", listenAddr)
				}
			}
		})
	}
}

func bridgeClient(network, addr string, id int) error {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	for round := range 3 {
		msg := fmt.Sprintf("client %d round %d\n", id, round)
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err != nil || got != msg {
			return fmt.Errorf("client %d: got %q, %v; want %q", id, got, err, msg)
		}
	}
	bulk := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{byte(id)}).Read(bulk)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(bulk)
		werr <- err
	}()
	back := make([]byte, len(bulk))
	if _, err := io.ReadFull(r, back); err != nil {
		return fmt.Errorf("client %d: bulk echo: %v", id, err)
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(back, bulk) {
		return fmt.Errorf("client %d: bulk echo differs", id)
	}
	return nil
}

// readN reads n bytes of r within a bounded time.
func readN(t *testing.T, r io.Reader, n int64) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, r, n)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("reading %d bytes: timeout", n)
	}
}

func devZero(t *testing.T) *os.File {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// kill9 kills p with SIGKILL and returns when it is gone.
func kill9(t *testing.T, p *testutil.Proc) {
	t.Helper()
	p.Signal(syscall.SIGKILL)
	p.MustExit(5*time.Second, 128+int(syscall.SIGKILL))
}

// peerGone matches what a sender says when its peer dies: its write failed
// (the live byte cleared, or the library saw the peer's domain released), or
// input was still waiting.
const peerGone = `broken pipe \(the peer closed or went away|peer domain \d+ is gone|the peer closed the connection before all of the input was sent`

// TestKill kills one side mid-stream.
func TestKill(t *testing.T) {
	t.Run("server-while-client-sends", func(t *testing.T) {
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "1", "p")
		_, out := srv.Pipes()
		srv.Start()
		cli := cat(t, dir, 1, "-t", "10s", "0", "p")
		cli.Cmd.Stdin = devZero(t)
		cli.Start()
		readN(t, out, 4<<20)
		kill9(t, srv)
		cli.MustExit(time.Second, 1)
		oneLine(t, cli, peerGone, "dom0:/local/domain/0/data/vchan/1/p")
	})
	t.Run("client-while-server-sends", func(t *testing.T) {
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "1", "p")
		srv.Cmd.Stdin = devZero(t)
		srv.Start()
		cli := cat(t, dir, 1, "-t", "10s", "0", "p")
		_, out := cli.Pipes()
		cli.Start()
		readN(t, out, 4<<20)
		kill9(t, cli)
		srv.MustExit(time.Second, 1)
		oneLine(t, srv, peerGone, "dom1:/local/domain/0/data/vchan/1/p")
		noVchanNodes(t, dir)
	})
	t.Run("sender", func(t *testing.T) {
		// vchan has no reset: a peer that dies looks like one that
		// closed. The receiver ends promptly with what it got.
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "1", "p")
		_, out := srv.Pipes()
		srv.Start()
		cli := cat(t, dir, 1, "-t", "10s", "0", "p")
		cli.Cmd.Stdin = devZero(t)
		cli.Start()
		readN(t, out, 4<<20)
		kill9(t, cli)
		go io.Copy(io.Discard, out)
		srv.MustExit(time.Second, 0)
		noVchanNodes(t, dir)
	})
	t.Run("keep-listening", func(t *testing.T) {
		_, dir := testutil.StartSimd(t, "")
		srv := cat(t, dir, 0, "-l", "-k", "1", "p")
		srv.Cmd.Stdin = devZero(t)
		srv.Start()
		for i := range 2 {
			cli := cat(t, dir, 1, "-t", "10s", "0", "p")
			_, out := cli.Pipes()
			cli.Start()
			readN(t, out, 4<<20)
			kill9(t, cli)
			start := time.Now()
			srv.WaitFor(peerGone, regexp.MustCompile(peerGone).MatchString, time.Second)
			t.Logf("the server reported the dead client %d after %v", i, time.Since(start).Round(time.Millisecond))
			if srv.Exited() {
				t.Fatalf("the -k server exited: %s", srv.Stderr.String())
			}
		}
		if got := vchanNodes(t, dir); len(got) != 1 || got[0] != "p" {
			t.Errorf("while listening, xenstore has %v under dom0's vchans for dom1, want [p]", got)
		}
		srv.Signal(syscall.SIGTERM)
		srv.MustExit(5*time.Second, 128+int(syscall.SIGTERM))
		noVchanNodes(t, dir)
	})
}

func TestExitCodes(t *testing.T) {
	_, dir := testutil.StartSimd(t, "")
	t.Run("no-server", func(t *testing.T) {
		// Refused at once, as nc is: the process's start-up is most of
		// the time, so the bound is loose, far below the old 10 s wait.
		p := cat(t, dir, 1, "0", "nobody")
		start := time.Now()
		p.Start()
		p.MustExit(3*time.Second, 1)
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v", d)
		}
		oneLine(t, p, "/local/domain/0/data/vchan/1/nobody")
		if s := p.Stderr.String(); !strings.Contains(s, "connection refused") {
			t.Errorf("stderr %q does not say connection refused", s)
		}
	})
	t.Run("no-server-waiting", func(t *testing.T) {
		p := cat(t, dir, 1, "-t", "500ms", "0", "nobody")
		start := time.Now()
		p.Start()
		p.MustExit(3*time.Second, 1)
		if d := time.Since(start); d < 500*time.Millisecond || d > 2500*time.Millisecond {
			t.Errorf("-t 500ms: exited after %v", d)
		}
		oneLine(t, p, "/local/domain/0/data/vchan/1/nobody")
	})
	t.Run("no-simulator", func(t *testing.T) {
		p := cat(t, testutil.SocketDir(t), 1, "0", "p")
		p.Start()
		p.MustExit(3*time.Second, 1)
		oneLine(t, p, "vchan-simd")
	})
	t.Run("no-domid", func(t *testing.T) {
		p := newProc(t, catBin(t), "-host", "sim", "-sim-dir", dir, "-l", "1", "p")
		p.Start()
		p.MustExit(3*time.Second, 1)
		oneLine(t, p, "-domid")
	})
	t.Run("usage", func(t *testing.T) {
		p := cat(t, dir, 1, "-l", "1")
		p.Start()
		p.MustExit(3*time.Second, 2)
	})
	for _, args := range [][]string{{"-l", "65535", "p"}, {"32752", "p"}, {"0", "a b"}, {"0", "rel/path"}} {
		t.Run("bad-args "+strings.Join(args, " "), func(t *testing.T) {
			p := cat(t, dir, 1, args...)
			p.Start()
			p.MustExit(3*time.Second, 2)
		})
	}
	t.Run("auto-sim-notice", func(t *testing.T) {
		if _, err := os.Stat(xenEvtchnDevice); err == nil {
			t.Skip("Xen is here")
		}
		p := newProc(t, catBin(t), "-domid", "1", "-t", "100ms", "0", "p")
		p.Cmd.Env = append(p.Cmd.Env, "VCHAN_SIM_DIR="+dir)
		p.Start()
		p.MustExit(3*time.Second, 1)
		if s := p.Stderr.String(); !strings.HasPrefix(s, "vchan-cat: no Xen here, using the simulator in "+dir+" as domain 1\n") {
			t.Errorf("stderr:\n%s", s)
		}
	})
}
