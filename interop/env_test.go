//go:build linux

package interop

import (
	"cmp"
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
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
	"github.com/vchan-go/vchan/vchan"
)

// env is what a test uses: Debian's Xen binaries and the shims and C peer
// built from this directory, which all tests share, and the test's own
// vchan-simd.
type env struct {
	root  string // Debian's packages unpacked (scripts/interop-deps.sh)
	build string // lib/ (the shims), vchan-peer
	tmp   string // a short directory for the tests' unix sockets
	dir   string // the directory of the test's vchan-simd
}

var (
	setupOnce sync.Once
	theEnv    *env
	setupErr  error
	skipMsg   string
)

// xenLib is where the Debian packages keep the libraries, under root.
const xenLib = "usr/lib/x86_64-linux-gnu"

// xenVersion is the libxenvchan the C peer links against:
// $VCHAN_INTEROP_XEN, 4.17 (Debian 12's) by default or 4.20 (Debian 13's).
// vchan-socket-proxy and libxenstore are 4.17's either way (4.20's need a
// newer glibc than Debian 12's).
var xenVersion = cmp.Or(os.Getenv("VCHAN_INTEROP_XEN"), "4.17")

// needed are the files of the Debian packages the tests use.
var needed = []string{
	xenLib + "/libxenvchan.so." + xenVersion,
	xenLib + "/libxenstore.so.4",
	xenLib + "/libxentoolcore.so.1",
	"usr/lib/xen-4.17/bin/vchan-socket-proxy",
	"usr/include/libxenvchan.h",
	"usr/include/xengnttab.h",
	"usr/include/xenevtchn.h",
	"usr/include/xenctrl.h",
}

func TestMain(m *testing.M) {
	code := testutil.Run(m)
	if theEnv != nil {
		os.RemoveAll(theEnv.tmp)
	}
	os.Exit(code)
}

// getEnv sets up what the tests share on first use, and starts a
// vchan-simd for the test tb (and its subtests). Without the Debian
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
	e := *theEnv
	_, e.dir = testutil.StartSimd(tb, "")
	return &e
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
	tmp, err := testutil.NewSocketDir()
	if err != nil {
		return nil, "", err
	}
	e := &env{root: root, tmp: tmp, build: filepath.Join(tmp, "b")}
	c := []string{"make", "-s", "XEN_ROOT=" + root, "OUT=" + e.build, "XEN_VERSION=" + xenVersion}
	if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, "", fmt.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
	}
	return e, "", nil
}

// nextDom hands out domain ids, fresh for every vchan so that tests do not
// see each other's xenstore entries.
var nextDom atomic.Uint32

func init() { nextDom.Store(100) }

func newDom() uint16 { return uint16(nextDom.Add(1)) }

// host joins the simulator as domain domid in this process.
func (e *env) host(tb testing.TB, domid uint16) *vchan.Host {
	tb.Helper()
	return testutil.Join(tb, vchan.SimHost, e.dir, domid)
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

// goCmds are the Go programs e.start runs, by name: built once
// (testutil.BuildCmd).
var goCmds = map[string]string{"gopeer": "github.com/vchan-go/vchan/interop/gopeer"}

// start runs a program of the build directory, a Go program of goCmds, or
// an absolute path, as domain domid, with pipes for its stdin and stdout.
// Its status lines ("peer: ...", "gopeer: ...") are on its stderr, for
// WaitLine. The test's cleanup kills it if it is still running.
func (e *env) start(tb testing.TB, domid uint16, prog string, args ...string) *testutil.Proc {
	tb.Helper()
	if pkg, ok := goCmds[prog]; ok {
		prog = testutil.BuildCmd(tb, pkg)
	} else if !filepath.IsAbs(prog) {
		prog = filepath.Join(e.build, prog)
	}
	return startProc(tb, e.cEnv(domid), e.tmp, 0, prog, args...)
}

// startProc runs prog with environment env in directory dir (or the
// current one if empty), with pipes for its stdin and stdout, killed after
// timeout (if > 0) or when the test is over.
func startProc(tb testing.TB, env []string, dir string, timeout time.Duration, prog string, args ...string) *testutil.Proc {
	tb.Helper()
	p := testutil.NewProc(tb, prog, args...)
	p.Cmd.Env, p.Cmd.Dir, p.Timeout = env, dir, timeout
	p.Pipes()
	p.Start()
	return p
}

// command writes a line to the peer's stdin and reads a line back.
func command(p *testutil.Proc, line string) error {
	if _, err := io.WriteString(p.Stdin, line+"\n"); err != nil {
		return err
	}
	got, err := p.Stdout.ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: %v (stderr: %s)", p.Name, err, p.Stderr)
	}
	if got != "ok\n" {
		return fmt.Errorf("%s: got %q, want ok", p.Name, got)
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
