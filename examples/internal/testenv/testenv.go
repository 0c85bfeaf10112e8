// Package testenv holds what the example tests share: the two simulated
// Xen hosts (in-process and the vchan-simd daemon), deterministic test
// data, and a goroutine leak check.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/vchan"
)

// Pair is a server and a client domain on one simulated Xen host.
type Pair struct {
	Name   string
	Server *vchan.Host // domain 0
	Client *vchan.Host // domain 1

	// Sim is the in-process Simulator, for resource checks; nil across
	// processes.
	Sim *vchan.Simulator
}

// InProcess returns domains 0 and 1 of a fresh in-process Simulator.
func InProcess(t testing.TB) Pair { return InProcessConfig(t, vchan.SimulatorConfig{}) }

// InProcessConfig is InProcess with the given simulator limits.
func InProcessConfig(t testing.TB, cfg vchan.SimulatorConfig) Pair {
	sim := vchan.NewSimulatorConfig(cfg)
	return Pair{Name: "sim", Server: sim.Domain(0), Client: sim.Domain(1), Sim: sim}
}

// CrossProcess starts a vchan-simd daemon of its own and joins it twice
// from this process, as domain 0 and as domain 1. Each host talks to the
// daemon over its own unix sockets and maps the shared pages itself, as two
// separate programs would. Everything is stopped in t.Cleanup.
func CrossProcess(t testing.TB) Pair {
	t.Helper()
	bin := simdBinary(t)
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("/tmp", "vsim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var stderr lockedBuffer
	cmd := exec.Command(bin, "-dir", dir)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM stops it cleanly (sockets and pid file removed).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("vchan-simd ignored SIGTERM for 10 s; killed. Its stderr:\n%s", stderr.String())
		}
	})
	// Wait for the control socket, then join.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "control")); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("vchan-simd exited before serving: %v\n%s", err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("vchan-simd did not create %s/control within 10 s:\n%s", dir, stderr.String())
		}
	}
	join := func(domid uint16) *vchan.Host {
		h, err := vchan.SimHost(dir, domid)
		if err != nil {
			t.Fatalf("joining vchan-simd as dom%d: %v\n%s", domid, err, stderr.String())
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	return Pair{Name: "simd", Server: join(0), Client: join(1)}
}

var (
	simdOnce sync.Once
	simdDir  string
	simdPath string
	simdErr  error
)

// Main runs the tests of a package that uses CrossProcess, then removes
// the vchan-simd it built. Call it from TestMain: os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if simdDir != "" {
		os.RemoveAll(simdDir)
	}
	return code
}

// simdBinary builds cmd/vchan-simd once per test binary.
func simdBinary(t testing.TB) string {
	t.Helper()
	simdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vchan-simd-bin")
		if err != nil {
			simdErr = err
			return
		}
		simdDir = dir // removed by Main
		simdPath = filepath.Join(dir, "vchan-simd")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", simdPath, "github.com/vchan-go/vchan/cmd/vchan-simd").CombinedOutput()
		if err != nil {
			simdErr = fmt.Errorf("go build vchan-simd: %v\n%s", err, out)
		}
	})
	if simdErr != nil {
		t.Fatal(simdErr)
	}
	return simdPath
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CheckReleased fails the test unless, within 5 s, domains 0 and 1 of the
// in-process simulator hold no grants, mappings or event channels: every
// connection and listener was closed and gave back what it held. Across
// processes it does nothing (the daemon checks that itself).
func (p Pair) CheckReleased(t testing.TB) {
	t.Helper()
	if p.Sim == nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r0, r1 := p.Sim.Resources(0), p.Sim.Resources(1)
		if r0 == (vchan.Resources{}) && r1 == (vchan.Resources{}) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("resources still held after everything was closed: dom0 %+v, dom1 %+v", r0, r1)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Data returns n pseudo-random bytes determined by seed: distinct seeds
// give distinct data, so a mix-up between streams or requests shows.
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Context returns a context that ends d from now, or a little before the
// test's own deadline, whichever comes first, so a hang fails the test
// with a message instead of killing the whole binary.
func Context(t testing.TB, d time.Duration) context.Context {
	deadline := time.Now().Add(d)
	if td, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := td.Deadline(); ok && dl.Add(-5*time.Second).Before(deadline) {
			deadline = dl.Add(-5 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// CheckGoroutines fails the test if, once its cleanups have run, more
// goroutines are left than there were when it was called. Call it first
// in a test, so that its check is the last cleanup to run.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d goroutines at the start, %d after cleanup:\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// Wait receives from ch, failing the test if nothing arrives before ctx ends.
func Wait[T any](t testing.TB, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// Connect listens on port for domain 1 in the server domain, dials it from
// the client domain through a vchan.Dialer, and returns both ends of the
// one connection, with ctx's deadline set on both; the Listener is closed
// and both ends are closed at the end of the test. ring is the server's
// ring size both ways (0: libxenvchan's in-page default).
func (p Pair) Connect(t testing.TB, ctx context.Context, port string, ring int) (srv, cli net.Conn) {
	t.Helper()
	ln, err := vchan.Listen(1, port, &vchan.Config{Host: p.Server, ReadBufferSize: ring, WriteBufferSize: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dl, _ := ctx.Deadline()
	ln.SetDeadline(dl)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
		}
		accepted <- c
	}()
	cli, err = (&vchan.Dialer{Config: &vchan.Config{Host: p.Client}}).DialContext(ctx, "vchan", "0:"+port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv = Wait(t, ctx, accepted, "Accept")
	if srv == nil {
		t.FailNow()
	}
	t.Cleanup(func() { srv.Close() })
	srv.SetDeadline(dl)
	cli.SetDeadline(dl)
	return srv, cli
}
