//go:build linux

package vchan

import (
	"errors"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/simd/simclient"
	"github.com/vchan-go/vchan/internal/testutil"
)

// TestWriteBlamesDaemonNotPeer: after kill -9 of vchan-simd, a peer that
// closes because of it leaves its live byte cleared; a Write on the
// survivor must report the lost daemon, not EPIPE (which says the peer
// closed of its own accord; vchan-cat used to say "broken pipe" then).
func TestWriteBlamesDaemonNotPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vchan-simd")
	}
	daemon, dir := testutil.StartSimd(t, "")
	h0, h1 := simHost(t, dir, 0), simHost(t, dir, 1)
	ln, err := Listen(1, "blame", &Config{Host: h0})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := Dial(0, "blame", &Config{Host: h1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.AcceptVchan()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	daemon.Signal(syscall.SIGKILL)
	<-daemon.Done()
	cli.Close() // the peer gives up, as vchan-cat does when its daemon is gone
	_, err = srv.Write([]byte("x"))
	if !errors.Is(err, simclient.ErrConnectionLost) || errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after the daemon died and the peer closed = %v, want the lost daemon (ErrConnectionLost), not EPIPE", err)
	}
}
