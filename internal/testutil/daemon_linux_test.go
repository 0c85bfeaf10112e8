package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vchan-go/vchan/internal/simd/simclient"
	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// checkSim joins the simulator in dir as domain 3 and reads its domid as
// dom0.
func checkSim(t *testing.T, dir string) {
	t.Helper()
	Join(t, simclient.Connect, dir, 3)
	if v, err := Xenstore(t, dir, 0).Read("/local/domain/3/domid"); err != nil || string(v) != "3" {
		t.Errorf("/local/domain/3/domid = %q, %v", v, err)
	}
}

func TestStartDaemon(t *testing.T) {
	t.Run("fresh-dir", func(t *testing.T) {
		d, dir := StartDaemon(t, simdaemon.Config{GrantLimit: 5})
		if d.Dir() != dir {
			t.Errorf("Dir() = %s, want %s", d.Dir(), dir)
		}
		checkSim(t, dir)
	})
	dir := SocketDir(t)
	t.Run("given-dir", func(t *testing.T) {
		if _, got := StartDaemon(t, simdaemon.Config{Dir: dir}); got != dir {
			t.Errorf("StartDaemon in %s returned %s", dir, got)
		}
		checkSim(t, dir)
	})
	if _, err := os.Stat(simproto.ControlPath(dir)); !os.IsNotExist(err) {
		t.Errorf("control socket after the test: %v, want it closed", err)
	}
}

func TestStartSimd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vchan-simd")
	}
	dir := SocketDir(t)
	var p *Proc
	t.Run("in", func(t *testing.T) {
		var got string
		if p, got = StartSimd(t, dir, "-grant-limit", "5"); got != dir {
			t.Errorf("StartSimd in %s returned %s", dir, got)
		}
		checkSim(t, dir)
	})
	// Stopped with SIGTERM: a clean exit that removes its sockets.
	if !p.Exited() || p.Err() != nil {
		t.Errorf("vchan-simd after the test: exited %v, %v", p.Exited(), p.Err())
	}
	if _, err := os.Stat(filepath.Join(dir, "pid")); !os.IsNotExist(err) {
		t.Errorf("pid file after the test: %v", err)
	}
}
