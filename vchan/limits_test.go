//go:build linux

package vchan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/testutil"
)

// Resource limits, end to end through Listen and Dial: the error must say
// which limit was hit and, where the message can know it, how to raise it.

// TestLimitGrantsCrossProcess: a server past vchan-simd's -grant-limit
// gets an error naming the flag; a failed Listen leaves nothing behind,
// and a Listen that fits still works.
func TestLimitGrantsCrossProcess(t *testing.T) {
	d, dir := testutil.StartDaemon(t, simdaemon.Config{GrantLimit: 8})
	h0 := simHost(t, dir, 0)
	// 1 page + 2 × 16 pages of 64 KiB rings: over a limit of 8.
	_, err := Listen(1, "big", &Config{Host: h0, ReadBufferSize: 65536, WriteBufferSize: 65536})
	t.Logf("Listen past the grant limit: %v", err)
	if !errors.Is(err, gnt.ErrNoSpace) || !strings.Contains(err.Error(), "-grant-limit") || !strings.Contains(err.Error(), "limit 8") {
		t.Errorf("Listen past -grant-limit 8 = %v; want gnt.ErrNoSpace naming the limit and -grant-limit", err)
	}
	if r := d.Resources(0); r != (simdaemon.Resources{}) {
		t.Errorf("the failed Listen left %+v behind", r)
	}
	ln, err := Listen(1, "small", &Config{Host: h0, ReadBufferSize: 4096, WriteBufferSize: 4096})
	if err != nil {
		t.Fatalf("Listen within the limit: %v", err)
	}
	ln.Close()
}

// TestLimitGrantsInProcess: the same through the in-process simulator.
func TestLimitGrantsInProcess(t *testing.T) {
	sim := NewSimulatorConfig(SimulatorConfig{GrantLimit: 8})
	_, err := Listen(1, "big", &Config{Host: sim.Domain(0), ReadBufferSize: 65536, WriteBufferSize: 65536})
	t.Logf("Listen past the grant limit: %v", err)
	if !errors.Is(err, gnt.ErrNoSpace) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Listen past GrantLimit 8 = %v; want gnt.ErrNoSpace naming the limit", err)
	}
}

// TestLimitWatchQuota: C xenstored allows an unprivileged domain 128
// watches (C xenstored -W/--watch-nb, or -Q watches=<nb>). Every waiting Dial holds one, so
// with 129 Dials waiting as one domU, one fails at once; the others keep
// waiting. The error must say it is the watch quota.
func TestLimitWatchQuota(t *testing.T) {
	for _, cross := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-process", true: "cross-process"}[cross], func(t *testing.T) {
			var h *Host
			if cross {
				_, dir := testutil.StartDaemon(t, simdaemon.Config{})
				h = simHost(t, dir, 1)
			} else {
				h = NewSimulator().Domain(1)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const n = 129
			errc := make(chan error, n)
			for i := range n {
				go func() {
					_, err := DialContext(ctx, 0, fmt.Sprint("w", i), &Config{Host: h, WaitForServer: true})
					errc <- err
				}()
			}
			var quota error
			select {
			case quota = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("129 waiting Dials as one domain: none failed on the watch quota")
			}
			cancel()
			for range n - 1 {
				if err := <-errc; !errors.Is(err, context.Canceled) && !errors.Is(err, syscall.E2BIG) {
					t.Errorf("another Dial: %v", err)
				}
			}
			t.Logf("the 129th waiting Dial: %v", quota)
			if !errors.Is(quota, syscall.E2BIG) || !strings.Contains(quota.Error(), "watch") {
				t.Fatalf("the 129th waiting Dial = %v; want E2BIG from the watch", quota)
			}
			if !strings.Contains(quota.Error(), "watch quota") || !strings.Contains(quota.Error(), "128") {
				t.Errorf("%q does not name the watch quota and its size", quota)
			}
			var ne net.Error
			//lint:ignore SA1019 Temporary is what net/http and gRPC check before retrying
			if !errors.As(quota, &ne) || !ne.Temporary() {
				t.Errorf("the watch quota error is not Temporary(): %v", quota)
			}
		})
	}
}

// TestLimitTransactionQuota: C xenstored allows an unprivileged connection
// 10 open transactions (C xenstored -t/--transaction, or -Q transactions=<nb>). Publishing a
// ring takes one; with the quota used up, Listen fails, and its error must
// say so.
func TestLimitTransactionQuota(t *testing.T) {
	_, dir := testutil.StartDaemon(t, simdaemon.Config{})
	h := simHost(t, dir, 2) // a domU server: dom0 has no quotas
	xs, err := h.xenstore()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		tx, err := xs.Begin()
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
		defer tx.Abort()
	}
	// A Dial holds no transaction (it reads the two keys as libxenvchan
	// does), so it still connects with the quota used up.
	ln, err := Listen(2, "txd", &Config{Host: simHost(t, dir, 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, derr := DialContext(ctx, 0, "txd", &Config{Host: h})
	if derr != nil {
		t.Errorf("Dial with the transaction quota used up = %v; want success (Dial needs no transaction)", derr)
	} else {
		c.Close()
	}
	_, err = Listen(1, "tx", &Config{Host: h})
	t.Logf("Listen with 10 transactions open: %v", err)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "transaction") {
		t.Fatalf("Listen with the transaction quota used up = %v; want ENOSPC from transaction_start", err)
	}
	if !strings.Contains(err.Error(), "transaction quota") || !strings.Contains(err.Error(), "10") {
		t.Errorf("%q does not name the transaction quota and its size", err)
	}
	var ne net.Error
	//lint:ignore SA1019 Temporary is what a server's retry loop checks
	if !errors.As(err, &ne) || !ne.Temporary() {
		t.Errorf("the transaction quota error is not Temporary(): %v", err)
	}
}
