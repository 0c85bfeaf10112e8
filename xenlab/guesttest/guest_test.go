package guesttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
	"github.com/vchan-go/vchan/vchan"
	"github.com/vchan-go/vchan/xenlab/stalldiag"
)

const evtchnDevice = "/dev/xen/evtchn"

// needXen skips the test outside a Xen domain.
func needXen(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(evtchnDevice); err != nil {
		t.Skipf("needs a Xen domain: %s is missing (%v); xenlab/run.sh runs these tests in one", evtchnDevice, err)
	}
}

// xenstoredSocket is where xenstored listens in dom0, as xsclient.Dial
// finds it.
func xenstoredSocket() string {
	dir := os.Getenv("XENSTORED_RUNDIR")
	if dir == "" {
		dir = xsclient.DefaultRunDir
	}
	return filepath.Join(dir, "socket")
}

func TestXenstoreSocket(t *testing.T) {
	needXen(t)
	sock := xenstoredSocket()
	if _, err := os.Stat(sock); err != nil {
		t.Skipf("needs xenstored's socket, which only dom0 has: %v", err)
	}
	c, err := xsclient.DialSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	exerciseXenstore(t, c)
}

func TestXenstoreDevice(t *testing.T) {
	needXen(t)
	c, err := xsclient.OpenDevice(xsclient.XenbusDevice)
	if err != nil {
		t.Fatal(err)
	}
	exerciseXenstore(t, c)
}

// exerciseXenstore runs every operation the vchan library uses against the
// real xenstored, in this domain's data/ directory, and closes c.
func exerciseXenstore(t *testing.T, c *xsclient.Client) {
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	idb, err := c.Read("domid")
	if err != nil {
		t.Fatalf("read own domid: %v", err)
	}
	var self uint16
	if _, err := fmt.Sscan(string(idb), &self); err != nil {
		t.Fatalf("domid %q: %v", idb, err)
	}
	home, err := c.DomainPath(self)
	if err != nil || home != fmt.Sprintf("/local/domain/%d", self) {
		t.Fatalf("DomainPath(%d) = %q, %v", self, home, err)
	}
	base := fmt.Sprintf("%s/data/guesttest-%d", home, os.Getpid())
	t.Cleanup(func() { c.Rm(base) })

	// Write and read back, absolute and relative; a value with a NUL.
	val := []byte("v\x00alue")
	if err := c.Write(base+"/a", val); err != nil {
		t.Fatal(err)
	}
	rel := base[len(home)+1:]
	if got, err := c.Read(rel + "/a"); err != nil || !bytes.Equal(got, val) {
		t.Fatalf("Read relative = %q, %v; want %q", got, err, val)
	}
	// A value at the device's payload limit still goes through.
	big := bytes.Repeat([]byte{'x'}, 2000)
	if err := c.Write(base+"/big", big); err != nil {
		t.Fatalf("write 2000 bytes: %v", err)
	}
	if got, err := c.Read(base + "/big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read 2000 bytes: %d bytes, %v", len(got), err)
	}
	if err := c.Mkdir(base + "/dir"); err != nil {
		t.Fatal(err)
	}
	names, err := c.Directory(base)
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"a", "big", "dir"}) {
		t.Fatalf("Directory = %q, %v", names, err)
	}
	if _, err := c.Read(base + "/missing"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Read of a missing node = %v, want ENOENT", err)
	}

	// Permissions as libxenvchan sets them: owner self with no default
	// access, read for domain 7.
	perms := []xenstore.Perm{{Domain: self, Access: xenstore.AccessNone}, {Domain: 7, Access: xenstore.AccessRead}}
	if err := c.SetPerms(base+"/a", perms); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetPerms(base + "/a"); err != nil || !slices.Equal(got, perms) {
		t.Fatalf("GetPerms = %v, %v; want %v", got, err, perms)
	}

	// A transaction commits atomically; an aborted one leaves no trace.
	err = xenstore.Update(c, func(tx xenstore.Ops) error {
		if err := tx.Write(base+"/tx1", []byte("1")); err != nil {
			return err
		}
		return tx.Write(base+"/tx2", []byte("2"))
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if got, err := c.Read(base + "/tx2"); err != nil || string(got) != "2" {
		t.Fatalf("after commit: %q, %v", got, err)
	}
	tx, err := c.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Write(base+"/aborted", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(base + "/aborted"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("aborted write visible: %v", err)
	}

	// A watch fires on registration, then on a change below it.
	w, err := c.Watch(base + "/dir")
	if err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, base+"/dir")
	if err := c.Write(base+"/dir/k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, base+"/dir/k")
	if err := w.Close(); err != nil {
		t.Errorf("watch Close: %v", err)
	}

	// Rm is recursive.
	if err := c.Rm(base); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(base + "/dir/k"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("node left after Rm: %v", err)
	}
}

// expectEvent waits for a watch event naming path, skipping others (spurious
// events are allowed).
func expectEvent(t *testing.T, w xenstore.Watch, path string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch closed while waiting for %s", path)
			}
			if p == path {
				return
			}
		case <-timeout:
			t.Fatalf("no watch event for %s within 10 s", path)
		}
	}
}

// selfRingPairs are the ring sizes of the conformance runs within one
// domain: the in-page default, Qubes' 64 KiB, and the 1 MiB maximum.
var selfRingPairs = []struct {
	name        string
	read, write int
}{
	{"inpage-0x0", 0, 0},
	{"65536x65536", 65536, 65536},
	{"1MiBx1MiB", 1 << 20, 1 << 20},
}

// TestConnSelf runs nettest.TestConn over vchan.XenHost with server and
// client in this one domain: Xen lets a domain map its own grants and bind
// an event channel to itself.
func TestConnSelf(t *testing.T) {
	needXen(t)
	host := vchan.XenHost()
	self, err := host.DomainID()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rp := range selfRingPairs {
		t.Run(rp.name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				n++
				port := fmt.Sprintf("gt%d-%d", os.Getpid()%10000, n)
				return selfPipe(host, self, port, rp.read, rp.write)
			})
			checkNodesGone(t, self)
		})
	}
}

// selfPipe connects a server and a client, both in domain self.
func selfPipe(host *vchan.Host, self uint16, port string, read, write int) (net.Conn, net.Conn, func(), error) {
	ln, err := vchan.Listen(self, port, &vchan.Config{Host: host, ReadBufferSize: read, WriteBufferSize: write})
	if err != nil {
		return nil, nil, nil, err
	}
	defer ln.Close()
	return acceptAndDial(ln, self, port, host)
}

// acceptAndDial accepts one connection on ln while it dials the server in
// domain server at portOrPath, both within 30 s, and returns the accepted
// end, the dialled end and a function that closes both.
func acceptAndDial(ln *vchan.Listener, server uint16, portOrPath string, host *vchan.Host) (net.Conn, net.Conn, func(), error) {
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		ln.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := vchan.DialContext(ctx, server, portOrPath, &vchan.Config{Host: host, WaitForServer: true})
	r := <-accepted
	if err != nil || r.err != nil {
		if err == nil {
			cli.Close()
		}
		if r.err == nil {
			r.c.Close()
		}
		return nil, nil, nil, fmt.Errorf("dial %s: %v; accept: %v", portOrPath, err, r.err)
	}
	return r.c, cli, func() { r.c.Close(); cli.Close() }, nil
}

// checkNodesGone checks that no vchan directory is left in xenstore after
// every connection closed.
func checkNodesGone(t *testing.T, self uint16) {
	t.Helper()
	c, err := xsclient.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := fmt.Sprintf("/local/domain/%d/data/vchan/%d", self, self)
	names, err := c.Directory(dir)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatal(err)
	}
	if len(names) > 0 {
		t.Errorf("xenstore nodes left under %s after every connection closed: %q", dir, names)
	}
}

// TestConnAcrossDomains runs nettest.TestConn between this domain and the
// domain in $VCHAN_TEST_PEER_DOMID, through a relay there (`vchanpeer relay
// 0 PATH-A PATH-B`, started by xenlab/guest/dom0-tests.sh): each pipe is a
// vchan served here (PATH-A, 64 KiB rings) that the relay dials, and a vchan
// the relay serves (PATH-B, its ring size) that this domain dials; the
// relay copies between them and passes a close on. So both ends nettest
// drives are here, one a server and one a client of a real cross-domain
// vchan, and every byte crosses to the peer domain and back. A relay
// serves one run of this test (it pairs connections in order).
//
// $VCHAN_HOST=sim:N runs it on the cross-process simulator instead, with
// the relay as another simulated domain.
func TestConnAcrossDomains(t *testing.T) {
	host, peer := peerHost(t, "needs VCHAN_TEST_PEER_DOMID and a relay in that domain; xenlab/run.sh sets both up")
	self, err := host.DomainID()
	if err != nil {
		t.Fatal(err)
	}
	pathA := fmt.Sprintf("/local/domain/%d/data/rl-a", self)
	pathB := fmt.Sprintf("/local/domain/%d/data/rl-b", peer)
	ln, err := vchan.Listen(peer, pathA, &vchan.Config{Host: host, ReadBufferSize: 65536, WriteBufferSize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, c2, stop, err = acceptAndDial(ln, peer, pathB, host)
		if err == nil {
			stop = watchPipe(c1, c2, stop)
		}
		return c1, c2, stop, err
	})
}

// watchPipe returns stop, first arranging that a pipe not stopped within
// 15 s prints its ends' ring state and every goroutine's stack: nettest's
// PingPong takes an end of file for a normal end, so a stalled pipe would
// otherwise pass silently and only delay the next (docs/XEN-4.20.md).
func watchPipe(c1, c2 net.Conn, stop func()) func() {
	type ringState interface {
		Buffered() int
		Available() int
	}
	start := time.Now()
	timer := time.AfterFunc(15*time.Second, func() {
		r1, r2 := c1.(ringState), c2.(ringState)
		fmt.Fprintf(os.Stderr, "guesttest: pipe still open after %v: accepted end %d buffered, %d free; dialled end %d buffered, %d free; %s\n",
			time.Since(start).Round(time.Millisecond), r1.Buffered(), r1.Available(), r2.Buffered(), r2.Available(), stalldiag.Dump())
	})
	return func() {
		timer.Stop()
		stop()
	}
}
