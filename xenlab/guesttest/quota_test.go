package guesttest

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vchan-go/vchan/vchan"
)

// peerHost returns the host of this domain and the peer domain named by
// $VCHAN_TEST_PEER_DOMID, or skips the test (with why) when that is unset.
func peerHost(t *testing.T, why string) (*vchan.Host, uint16) {
	t.Helper()
	peerEnv := os.Getenv("VCHAN_TEST_PEER_DOMID")
	if peerEnv == "" {
		t.Skip(why)
	}
	if os.Getenv(vchan.HostEnv) == "" {
		needXen(t)
	}
	var peer uint16
	if _, err := fmt.Sscan(peerEnv, &peer); err != nil {
		t.Fatalf("VCHAN_TEST_PEER_DOMID=%q: %v", peerEnv, err)
	}
	host, err := vchan.DefaultHost()
	if err != nil {
		t.Fatal(err)
	}
	return host, peer
}

// TestManyListeners is the real-Xen form of the vchan package's
// TestManyListenersUnderQuotas. With VCHAN_TEST_ROLE=listen it opens
// $VCHAN_TEST_LISTENERS Listeners at once (ports q0, q1, ...) for the domain
// in $VCHAN_TEST_PEER_DOMID, each serving one client: it reads 4096 bytes and
// answers their CRC-32 ($VCHAN_TEST_LISTEN_CONCURRENCY bounds how many
// Listen calls run at once; all by default). With VCHAN_TEST_ROLE=dial it makes as many Dials at
// once to that domain's ports, waiting for the servers to appear, and
// checks each answer. In an unprivileged domain xenstored's quotas apply
// (C xenstored: 10 transactions, 128 watches, 1000 nodes, 20 outstanding
// requests): a refusal must be a Temporary error that names the quota,
// which this test retries; anything else fails it, and nothing may hang.
func TestManyListeners(t *testing.T) {
	role := os.Getenv("VCHAN_TEST_ROLE")
	host, peer := peerHost(t, "needs VCHAN_TEST_ROLE (listen or dial) and VCHAN_TEST_PEER_DOMID; xenlab/run.sh sets both")
	n, err := strconv.Atoi(os.Getenv("VCHAN_TEST_LISTENERS"))
	if err != nil || n < 1 {
		t.Fatalf("VCHAN_TEST_LISTENERS=%q: want a count", os.Getenv("VCHAN_TEST_LISTENERS"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var refused atomic.Int64
	retry := func(what string, f func() error) error {
		for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
			err := f()
			var ne net.Error
			//lint:ignore SA1019 Temporary is what a caller's retry loop checks
			if err == nil || !errors.As(err, &ne) || !ne.Temporary() {
				return err
			}
			if !strings.Contains(err.Error(), "quota") {
				return fmt.Errorf("%s: a Temporary error that names no quota: %w", what, err)
			}
			refused.Add(1)
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: still refused when the test's time ran out: %w", what, err)
			case <-time.After(delay):
			}
		}
	}
	start := time.Now()
	errs := make(chan error, n)
	switch role {
	case "listen":
		// VCHAN_TEST_LISTEN_CONCURRENCY bounds how many Listen calls (each
		// a xenstore transaction) run at once; the Listeners all stay open.
		par := n
		if v := os.Getenv("VCHAN_TEST_LISTEN_CONCURRENCY"); v != "" {
			if par, err = strconv.Atoi(v); err != nil || par < 1 {
				t.Fatalf("VCHAN_TEST_LISTEN_CONCURRENCY=%q: want a count", v)
			}
		}
		slots := make(chan struct{}, par)
		for i := range n {
			go func() { errs <- serveOne(ctx, host, peer, fmt.Sprint("q", i), retry, slots) }()
		}
	case "dial":
		for i := range n {
			go func() { errs <- dialOne(ctx, host, peer, fmt.Sprint("q", i), i, retry) }()
		}
	default:
		t.Fatalf("VCHAN_TEST_ROLE=%q: want listen or dial", role)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	t.Logf("%s: %d connections in %v; %d attempts refused for a quota and retried", role, n, time.Since(start).Round(time.Millisecond), refused.Load())
}

// serveOne listens on port (holding one of slots meanwhile), accepts one client, reads 4096 bytes and
// answers their CRC-32 in hex.
func serveOne(ctx context.Context, host *vchan.Host, peer uint16, port string, retry func(string, func() error) error, slots chan struct{}) error {
	var ln *vchan.Listener
	slots <- struct{}{}
	err := retry("Listen "+port, func() (err error) {
		ln, err = vchan.Listen(peer, port, &vchan.Config{Host: host, ReadBufferSize: 1, WriteBufferSize: 1})
		return err
	})
	<-slots
	if err != nil {
		return err
	}
	defer ln.Close()
	deadline, _ := ctx.Deadline()
	ln.SetDeadline(deadline)
	var c net.Conn
	if err := retry("Accept "+port, func() (err error) {
		c, err = ln.Accept()
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("%s: read: %w", port, err)
	}
	if _, err := fmt.Fprintf(c, "%08x", crc32.ChecksumIEEE(buf)); err != nil {
		return fmt.Errorf("%s: write: %w", port, err)
	}
	// The client closes once it has the answer: the answer is delivered.
	if _, err := c.Read(buf[:1]); err != io.EOF {
		return fmt.Errorf("%s: after the answer: %v, want io.EOF", port, err)
	}
	return nil
}

// dialOne dials port, waiting for its server to appear, sends 4096 bytes
// and checks the CRC-32 the server answers.
func dialOne(ctx context.Context, host *vchan.Host, peer uint16, port string, i int, retry func(string, func() error) error) error {
	var c *vchan.Conn
	if err := retry("Dial "+port, func() (err error) {
		c, err = vchan.DialContext(ctx, peer, port, &vchan.Config{Host: host, WaitForServer: true})
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	msg := make([]byte, 4096)
	for j := range msg {
		msg[j] = byte(i * j)
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("%s: write: %w", port, err)
	}
	sum := make([]byte, 8)
	if _, err := io.ReadFull(c, sum); err != nil || string(sum) != fmt.Sprintf("%08x", crc32.ChecksumIEEE(msg)) {
		return fmt.Errorf("%s: checksum %q, %v", port, sum, err)
	}
	return nil
}
