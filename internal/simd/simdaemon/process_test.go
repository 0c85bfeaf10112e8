//go:build linux

package simdaemon_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/simd/simclient"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/internal/testutil"
)

// childEnv makes the test binary act as a helper process (see runChild).
const childEnv = "SIMD_TEST_CHILD_DIR"

func TestMain(m *testing.M) { testutil.Main(m, childEnv, runChild) }

// runChild is domain 1 in a separate process: it binds a port for dom0,
// shares one page with dom0 with the unmap notification a vchan server
// uses (docs/PROTOCOL.md §5), writes "child" into it, prints
// "READY <ref> <port>" on stderr, then answers "check <text>" (is <text>
// at offset 100?) on stdout until it is killed or stdin closes.
func runChild(dir string) error {
	dom, err := simclient.Connect(dir, 1)
	if err != nil {
		return err
	}
	ch, err := dom.Evtchn().BindUnbound(0)
	if err != nil {
		return err
	}
	r, err := dom.Sharer().Share(0, 1, &gnt.UnmapNotify{ClearByte: true, Offset: 21, SendEvent: true, Port: uint32(ch.LocalPort())})
	if err != nil {
		return err
	}
	b := r.Bytes()
	copy(b, "child")
	b[21] = 1
	fmt.Fprintf(os.Stderr, "READY %d %d\n", r.Refs()[0], ch.LocalPort())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		want, ok := strings.CutPrefix(sc.Text(), "check ")
		if !ok {
			continue
		}
		if got := string(b[100 : 100+len(want)]); got == want {
			fmt.Println("OK")
		} else {
			fmt.Printf("BAD %q\n", got)
		}
	}
	return nil
}

// startChild runs runChild in a separate process and waits for its READY
// line.
func startChild(t *testing.T, dir string) (child *testutil.Proc, ref gnt.Ref, port evtchn.Port) {
	t.Helper()
	child = testutil.NewChild(t, childEnv+"="+dir)
	child.Pipes()
	child.Start()
	line := child.WaitLine("READY ", 20*time.Second)
	var r, p uint32
	if _, err := fmt.Sscanf(line, "READY %d %d", &r, &p); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	return child, gnt.Ref(r), evtchn.Port(p)
}

// xenstoreTool runs a libxenstore C tool against a socket of the daemon.
func xenstoreTool(t *testing.T, sock, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		msg := name + " not found: install the Debian package xenstore-utils (apt-get install -y xenstore-utils) to run the C tool check"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("XENSTORED_PATH=%s %s %v: %v\n%s", sock, name, args, err, out)
	}
	return string(out)
}

// TestSeparateProcesses runs the vchan-simd binary and a helper process as
// domain 1, with this process as domain 0.
func TestSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vchan-simd")
	}
	daemon, dir := testutil.StartSimd(t, "", "-v", "-grant-limit", "4")
	dom0 := connect(t, dir, 0)
	xs, err := dom0.Xenstore()
	if err != nil {
		t.Fatal(err)
	}
	w, err := xs.Watch("@releaseDomain")
	if err != nil {
		t.Fatal(err)
	}
	<-w.Events()

	child, ref, port := startChild(t, dir)
	if v, err := xs.Read("/local/domain/1/domid"); err != nil || string(v) != "1" {
		t.Errorf("/local/domain/1/domid = %q, %v", v, err)
	}
	ch, err := dom0.Evtchn().BindInterdomain(1, port)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dom0.Mapper().Map(1, []gnt.Ref{ref}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := m.Bytes()
	if got := string(b[:5]); got != "child" || b[21] != 1 {
		t.Fatalf("mapped page starts %q, byte 21 = %d", got, b[21])
	}
	copy(b[100:], "parent")
	fmt.Fprintln(child.Stdin, "check parent")
	if line, _ := child.Stdout.ReadString('\n'); line != "OK\n" {
		t.Fatalf("child does not see the parent's write: %q", line)
	}

	t.Run("C tools", func(t *testing.T) {
		ls := xenstoreTool(t, simproto.XenstorePath(dir, 0), "xenstore-ls", "/local/domain/0")
		if !strings.Contains(ls, `domid = "0"`) {
			t.Errorf("xenstore-ls /local/domain/0 as dom0:\n%s", ls)
		}
		// A connection on dom1's socket is domain 1.
		if v := xenstoreTool(t, simproto.XenstorePath(dir, 1), "xenstore-read", "domid"); strings.TrimSpace(v) != "1" {
			t.Errorf("xenstore-read domid on dom1's socket = %q", v)
		}
	})

	t.Run("grant limit", func(t *testing.T) {
		_, err := dom0.Sharer().Share(1, 5, nil)
		if !errors.Is(err, gnt.ErrNoSpace) || !strings.Contains(err.Error(), "-grant-limit") {
			t.Errorf("share of 5 pages with -grant-limit 4 = %v", err)
		}
	})

	t.Run("second daemon", func(t *testing.T) {
		second := testutil.NewProc(t, testutil.BuildCmd(t, testutil.SimdPkg), "-dir", dir)
		second.Start()
		err := second.Wait(10 * time.Second)
		out := second.Stderr.String()
		want := fmt.Sprintf("vchan-simd already running in %s (pid %d)", dir, daemon.Cmd.Process.Pid)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("second daemon: %v, output %q, want %q", err, out, want)
		}
	})

	// kill -9 of the child: the kernel-style unmap notification.
	killed := time.Now()
	child.Signal(syscall.SIGKILL)
	if !waitEvent(ch, 100*time.Millisecond) {
		t.Fatalf("no event within 100ms of killing the child")
	}
	if b[21] != 0 {
		t.Errorf("live byte %d after the child died, want 0", b[21])
	}
	t.Logf("event %v after kill -9", time.Since(killed))
	if string(b[:5]) != "child" {
		t.Error("mapping lost its contents")
	}
	waitReleased(t, xs, w, 1)
	if _, err := xs.Read("/local/domain/1"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("/local/domain/1 after the child died: %v", err)
	}
	if _, err := os.Stat(simproto.XenstorePath(dir, 1)); err == nil {
		t.Error("dom1's xenstored socket outlives the domain")
	}

	// kill -9 of the daemon: calls fail promptly, waiters wake.
	waiter, err := dom0.Evtchn().BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	woke := waitFailure(waiter)
	daemon.Signal(syscall.SIGKILL)
	<-daemon.Done()
	died := time.Now()
	select {
	case <-woke:
	case <-time.After(time.Second):
		t.Error("channel waiter not woken within 1s of the daemon's death")
	}
	for _, call := range []func() error{
		waiter.Notify,
		func() error { _, err := dom0.Sharer().Share(1, 1, nil); return err },
		func() error { _, err := dom0.Evtchn().BindUnbound(1); return err },
	} {
		if err := call(); !errors.Is(err, simclient.ErrConnectionLost) || !strings.Contains(err.Error(), "vchan simulator connection lost") {
			t.Errorf("call after the daemon died = %v, want connection lost", err)
		}
	}
	if d := time.Since(died); d > time.Second {
		t.Errorf("failing took %v", d)
	}

	// Its sockets are stale now; a new daemon replaces them, and stops
	// cleanly on SIGTERM.
	if _, err := simclient.Connect(dir, 0); !errors.Is(err, simclient.ErrNotRunning) || !strings.Contains(err.Error(), "stale socket") {
		t.Errorf("Connect after the daemon died = %v, want the stale-socket hint", err)
	}
	d2, _ := testutil.StartSimd(t, dir, "-v")
	connect(t, dir, 2).Close()
	d2.Signal(syscall.SIGTERM)
	select {
	case <-d2.Done():
		if d2.Err() != nil {
			t.Errorf("vchan-simd after SIGTERM: %v\n%s", d2.Err(), d2.Stderr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("vchan-simd did not exit on SIGTERM")
	}
	for _, f := range []string{simproto.ControlPath(dir), simproto.XenstorePath(dir, 0), filepath.Join(dir, "pid")} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind after SIGTERM", f)
		}
	}
	if _, err := simclient.Connect(dir, 0); !errors.Is(err, simclient.ErrNotRunning) || strings.Contains(err.Error(), "stale") {
		t.Errorf("Connect after a clean shutdown = %v", err)
	}
}
