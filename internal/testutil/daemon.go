package testutil

import (
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
)

// simdStartTimeout bounds how long vchan-simd takes to serve.
const simdStartTimeout = 10 * time.Second

// StartDaemon runs the simulator daemon in the test process, in cfg.Dir
// or, if that is empty, in a fresh SocketDir, and closes it when the test
// ends. It returns the daemon and its directory.
func StartDaemon(tb testing.TB, cfg simdaemon.Config) (*simdaemon.Daemon, string) {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = SocketDir(tb)
	}
	d, err := simdaemon.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, cfg.Dir
}

// StartSimd runs the vchan-simd command (built with BuildCmd) as a process
// with args, in dir or, if that is empty, in a fresh SocketDir, and returns
// once it serves. It returns the process and the directory. When the test
// ends vchan-simd is stopped with SIGTERM, and killed if it has not exited
// within 5 s.
func StartSimd(tb testing.TB, dir string, args ...string) (*Proc, string) {
	tb.Helper()
	if dir == "" {
		dir = SocketDir(tb)
	}
	p := NewProc(tb, BuildCmd(tb, SimdPkg), append([]string{"-dir", dir}, args...)...)
	p.Start()
	tb.Cleanup(func() {
		if p.Exited() {
			return
		}
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
		}
	})
	// vchan-simd logs "serving in DIR (pid N); ..." once its sockets listen.
	serving := " serving in " + dir + " "
	p.WaitFor("serving in "+dir, func(line string) bool { return strings.Contains(line, serving) }, simdStartTimeout)
	return p, dir
}

// Join joins the simulator in dir as domain domid with join, and closes
// what join returns when the test ends. join is simclient.Connect, or
// vchan.SimHost in the tests of package vchan and above (this package
// cannot import vchan, whose tests use it).
func Join[D io.Closer](tb testing.TB, join func(dir string, domid uint16) (D, error), dir string, domid uint16) D {
	tb.Helper()
	d, err := join(dir, domid)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// Xenstore connects to the xenstored socket of domain domid of the
// simulator in dir, as that domain (dom0 for checks of the whole store),
// and closes the connection when the test ends.
func Xenstore(tb testing.TB, dir string, domid uint16) *xsclient.Client {
	tb.Helper()
	xs, err := xsclient.DialSocket(simproto.XenstorePath(dir, domid))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { xs.Close() })
	return xs
}
