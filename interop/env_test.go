//go:build linux

package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/vchan"
)

// env is what the tests share: Debian's Xen binaries, the shims and peers
// built from this directory, and one running vchan-simd.
type env struct {
	root   string // Debian's packages unpacked (scripts/interop-deps.sh)
	build  string // lib/ (the shims), vchan-peer, vchan-simd, gopeer
	dir    string // the simulator's directory
	tmp    string
	daemon *exec.Cmd
	log    *syncBuffer // the daemon's stderr
}

var (
	setupOnce sync.Once
	theEnv    *env
	setupErr  error
	skipMsg   string
)

// xenLib is where the Debian packages keep the libraries, under root.
const xenLib = "usr/lib/x86_64-linux-gnu"

// needed are the files of the Debian packages the tests use.
var needed = []string{
	xenLib + "/libxenvchan.so.4.17",
	xenLib + "/libxenstore.so.4",
	xenLib + "/libxentoolcore.so.1",
	"usr/lib/xen-4.17/bin/vchan-socket-proxy",
	"usr/include/libxenvchan.h",
	"usr/include/xengnttab.h",
	"usr/include/xenevtchn.h",
	"usr/include/xenctrl.h",
}

func TestMain(m *testing.M) {
	code := m.Run()
	if theEnv != nil {
		theEnv.teardown()
	}
	os.Exit(code)
}

// getEnv sets the environment up on first use. Without the Debian
// packages (or gcc, make) it skips the test, or fails it if $CI is set.
func getEnv(tb testing.TB) *env {
	tb.Helper()
	setupOnce.Do(func() { theEnv, skipMsg, setupErr = setup() })
	switch {
	case skipMsg != "" && os.Getenv("CI") != "":
		tb.Fatalf("%s (CI is set, so this is a failure)", skipMsg)
	case skipMsg != "":
		tb.Skip(skipMsg)
	case setupErr != nil:
		tb.Fatal(setupErr)
	}
	return theEnv
}

func setup() (*env, string, error) {
	root := os.Getenv("VCHAN_INTEROP_CACHE")
	if root == "" {
		root = filepath.Join("..", ".cache", "interop")
	}
	root, err := filepath.Abs(filepath.Join(root, "root"))
	if err != nil {
		return nil, "", err
	}
	for _, f := range needed {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			return nil, fmt.Sprintf("Xen's C vchan library and tools are not unpacked in %s (%s missing): run scripts/interop-deps.sh", root, f), nil
		}
	}
	for _, tool := range []string{"gcc", "make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Sprintf("%s not found: run scripts/interop-deps.sh", tool), nil
		}
	}
	// Short paths: unix socket paths are limited to 107 bytes.
	tmp, err := os.MkdirTemp("", "vi")
	if err != nil {
		return nil, "", err
	}
	e := &env{root: root, tmp: tmp, build: filepath.Join(tmp, "b"), dir: filepath.Join(tmp, "s"), log: new(syncBuffer)}
	fail := func(err error) (*env, string, error) {
		e.teardown()
		return nil, "", err
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return fail(err)
	}
	for _, c := range [][]string{
		{"make", "-s", "XEN_ROOT=" + root, "OUT=" + e.build},
		{"go", "build", "-o", filepath.Join(e.build, "vchan-simd"), "../cmd/vchan-simd"},
		{"go", "build", "-o", filepath.Join(e.build, "gopeer"), "./gopeer"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fail(fmt.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out))
		}
	}
	e.daemon = exec.Command(filepath.Join(e.build, "vchan-simd"), "-dir", e.dir)
	e.daemon.Stderr = e.log
	if err := e.daemon.Start(); err != nil {
		return fail(err)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(e.dir, "control")); err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			return fail(fmt.Errorf("vchan-simd did not start in 10 s:\n%s", e.log))
		}
	}
	return e, "", nil
}

func (e *env) teardown() {
	if e.daemon != nil && e.daemon.Process != nil {
		_ = e.daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = e.daemon.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(e.tmp)
}

// nextDom hands out domain ids, fresh for every vchan so that tests do not
// see each other's xenstore entries.
var nextDom atomic.Uint32

func init() { nextDom.Store(100) }

func newDom() uint16 { return uint16(nextDom.Add(1)) }

// host joins the simulator as domain domid in this process.
func (e *env) host(tb testing.TB, domid uint16) *vchan.Host {
	tb.Helper()
	h, err := vchan.SimHost(e.dir, domid)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// vpath is the xenstore base path of a test vchan.
func vpath(server, client uint16, port string) string {
	return vchan.PortPath(server, client, port)
}

// cEnv is the environment of a C process acting as domain domid: the shims
// first, then Debian's libraries (the real libxenstore).
func (e *env) cEnv(domid uint16) []string {
	return append(os.Environ(),
		"LD_LIBRARY_PATH="+filepath.Join(e.build, "lib")+":"+filepath.Join(e.root, xenLib),
		"VCHAN_SIM_DIR="+e.dir,
		"VCHAN_HOST=sim:"+strconv.Itoa(int(domid)),
		"XENSTORED_PATH="+filepath.Join(e.dir, "dom"+strconv.Itoa(int(domid)), "xenstored"),
	)
}

// proc is a child process: a C peer, gopeer or vchan-socket-proxy.
type proc struct {
	tb     testing.TB
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File
	out    *bufio.Reader // over stdout
	status chan string   // stderr lines that start with "peer: " or "gopeer: "
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, after done
}

// start runs a program of the build directory, or an absolute path, as
// domain domid. Its stderr lines starting with "peer: " or "gopeer: " are
// its status lines. The test's cleanup kills it if it is still running.
func (e *env) start(tb testing.TB, domid uint16, prog string, args ...string) *proc {
	tb.Helper()
	if !filepath.IsAbs(prog) {
		prog = filepath.Join(e.build, prog)
	}
	isStatus := func(line string) bool {
		return strings.HasPrefix(line, "peer: ") || strings.HasPrefix(line, "gopeer: ")
	}
	return startProc(tb, e.cEnv(domid), e.tmp, 0, isStatus, prog, args...)
}

// startProc runs prog with environment env in directory dir (or the
// current one if empty), killed after timeout (if > 0) or when the test is
// over. Its stderr lines for which keep returns true go to status.
func startProc(tb testing.TB, env []string, dir string, timeout time.Duration, keep func(string) bool, prog string, args ...string) *proc {
	tb.Helper()
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	p := &proc{tb: tb, name: filepath.Base(prog), status: make(chan string, 1000), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, prog, args...)
	p.cmd.Env = env
	p.cmd.Dir = dir
	p.cmd.WaitDelay = 5 * time.Second
	// Pipes of our own, not exec's copying goroutines: the output must
	// stay readable after the process exits.
	outR, outW, err := os.Pipe()
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = outW, errW
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		cancel()
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		tb.Fatal(err)
	}
	outW.Close()
	errW.Close()
	p.stdout = outR
	p.out = bufio.NewReader(outR)
	go func() {
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if keep(line) {
				p.status <- line
			}
		}
		errR.Close()
		close(p.status)
	}()
	go func() {
		p.err = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.kill()
		outR.Close()
		if tb.Failed() {
			tb.Logf("%s %s stderr:\n%s", p.name, strings.Join(args, " "), p.stderr)
		}
	})
	return p
}

// kill sends SIGKILL unless the process has exited, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitStatus returns the next status line that starts with prefix. It
// fails the test after timeout or if the process closes its stderr first.
func (p *proc) waitStatus(prefix string, timeout time.Duration) string {
	p.tb.Helper()
	return p.waitFor(func(l string) bool { return strings.HasPrefix(l, prefix) }, prefix, timeout)
}

// waitLine returns the next status line that contains s.
func (p *proc) waitLine(s string, timeout time.Duration) string {
	p.tb.Helper()
	return p.waitFor(func(l string) bool { return strings.Contains(l, s) }, s, timeout)
}

func (p *proc) waitFor(match func(string) bool, what string, timeout time.Duration) string {
	p.tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.status:
			if !ok {
				<-p.done
				p.tb.Fatalf("%s exited (%v) before printing %q", p.name, p.err, what)
			}
			if match(line) {
				return line
			}
		case <-t.C:
			p.tb.Fatalf("%s: no %q within %v", p.name, what, timeout)
		}
	}
}

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait(timeout time.Duration) error {
	p.tb.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.tb.Fatalf("%s still running after %v", p.name, timeout)
		return nil
	}
}

// command writes a line to the peer's stdin and reads a line back.
func (p *proc) command(line string) error {
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		return err
	}
	got, err := p.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: %v (stderr: %s)", p.name, err, p.stderr)
	}
	if got != "ok\n" {
		return fmt.Errorf("%s: got %q, want ok", p.name, got)
	}
	return nil
}

// parseOrders reads "left_order=L right_order=R" from a connected line.
func parseOrders(line string) (left, right int, err error) {
	i := strings.Index(line, "left_order=")
	if i < 0 {
		return 0, 0, fmt.Errorf("no orders in %q", line)
	}
	_, err = fmt.Sscanf(line[i:], "left_order=%d right_order=%d", &left, &right)
	return left, right, err
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// firstErr collects the first error of several goroutines.
type firstErr struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (f *firstErr) Go(fn func() error) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := fn(); err != nil {
			f.once.Do(func() { f.err = err })
		}
	}()
}

func (f *firstErr) Wait() error {
	f.wg.Wait()
	return f.err
}

// isEOF reports whether err is io.EOF (bare, as net.Conn returns it).
func isEOF(err error) bool { return errors.Is(err, io.EOF) }
