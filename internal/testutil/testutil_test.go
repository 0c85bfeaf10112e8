package testutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// childEnv makes the test binary a helper process (see runChild).
const childEnv = "TESTUTIL_TEST_CHILD"

func TestMain(m *testing.M) { Main(m, childEnv, runChild) }

// runChild is a process under test. Roles:
//
//	lines  write "one", "two x" and "three" (without a newline) on
//	       stderr, copy stdin to stdout, then exit 3
//	block  read stdin until it closes, then exit 0
//	fail   fail (exit 1, the error on stderr)
func runChild(role string) error {
	switch role {
	case "lines":
		fmt.Fprint(os.Stderr, "one\ntwo x\nthree")
		io.Copy(os.Stdout, os.Stdin)
		os.Exit(3)
	case "block":
		io.Copy(io.Discard, os.Stdin)
		return nil
	}
	return errors.New("no such role")
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("ab"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if s := b.String(); s != strings.Repeat("ab", 800) {
		t.Errorf("%d bytes, want 1600 of \"ab\"", len(s))
	}
}

func TestSocketDir(t *testing.T) {
	var dir string
	t.Run("in", func(t *testing.T) {
		dir = SocketDir(t)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("SocketDir %s: %v", dir, err)
		}
		if strings.HasPrefix(dir, filepath.Dir(t.TempDir())) {
			t.Errorf("SocketDir %s is under the test's TempDir", dir)
		}
		if len(dir) > maxRootLen+16 {
			t.Errorf("SocketDir %s is %d bytes long", dir, len(dir))
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s after the test: %v, want it removed", dir, err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	long := t.TempDir()
	for len(long) <= maxRootLen {
		long = filepath.Join(long, "a-long-temporary-directory")
	}
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	if d := SocketDir(t); !strings.HasPrefix(d, "/tmp/") {
		t.Errorf("with TMPDIR=%s (%d bytes), SocketDir = %s, want it in /tmp", long, len(long), d)
	}
}

// fatalTB records the first Fatal of a test helper instead of failing the
// test, and ends the goroutine that called it.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

func (f *fatalTB) Fatal(args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// fatal runs fn with f as its test and returns what it failed with.
func (f *fatalTB) fatal(fn func()) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}

func TestProc(t *testing.T) {
	p := NewChild(t, childEnv+"=lines")
	stdin, stdout := p.Pipes()
	p.Start()
	// WaitLine passes over lines and returns the next that matches.
	if got := p.WaitLine("two", 10*time.Second); got != "two x" {
		t.Errorf("WaitLine(two) = %q", got)
	}
	if _, err := io.WriteString(stdin, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := p.Stdout.ReadString('\n'); err != nil || line != "hello\n" {
		t.Errorf("stdout: %q, %v", line, err)
	}
	stdin.Close()
	// The last line lacks its newline: it is a line once stderr ends.
	if got := p.WaitFor("three", func(l string) bool { return strings.HasSuffix(l, "ree") }, 10*time.Second); got != "three" {
		t.Errorf("WaitFor(three) = %q", got)
	}
	p.MustExit(10*time.Second, 3)
	if b, err := io.ReadAll(stdout); err != nil || len(b) != 0 {
		t.Errorf("stdout after exit: %q, %v", b, err)
	}
	if s := p.Stderr.String(); s != "one\ntwo x\nthree" {
		t.Errorf("Stderr = %q", s)
	}
	// After the process closed its stderr, WaitLine fails at once.
	f := &fatalTB{TB: t}
	p.tb = f
	start := time.Now()
	if msg := f.fatal(func() { p.WaitLine("four", time.Minute) }); !strings.Contains(msg, `before printing "four"`) {
		t.Errorf("WaitLine after exit failed with %q", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitLine after exit took %v", d)
	}
}

func TestProcTimeouts(t *testing.T) {
	p := NewChild(t, childEnv+"=block")
	p.Pipes()
	p.Start()
	f := &fatalTB{TB: t}
	p.tb = f
	if msg := f.fatal(func() { p.WaitLine("never", 50*time.Millisecond) }); !strings.Contains(msg, `no "never" within 50ms`) {
		t.Errorf("WaitLine failed with %q", msg)
	}
	if msg := f.fatal(func() { p.Wait(50 * time.Millisecond) }); !strings.Contains(msg, "still running after 50ms") {
		t.Errorf("Wait failed with %q", msg)
	}
	if msg := f.fatal(func() { p.MustExit(50*time.Millisecond, 0) }); !strings.Contains(msg, "still running after 50ms") {
		t.Errorf("MustExit failed with %q", msg)
	}
	p.tb = t
	p.Kill()
	if !p.Exited() || p.Err() == nil {
		t.Fatalf("after Kill: exited %v, %v", p.Exited(), p.Err())
	}
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		if got := p.ExitCode(); got != 128+9 {
			t.Errorf("ExitCode after Kill = %d, want 137", got)
		}
	}
}

func TestMainChildFails(t *testing.T) {
	p := NewChild(t, childEnv+"=fail")
	p.Start()
	p.MustExit(10*time.Second, 1)
	if s, want := p.Stderr.String(), childEnv+"=fail: no such role\n"; s != want {
		t.Errorf("stderr %q, want %q", s, want)
	}
}

func TestProcTimeout(t *testing.T) {
	p := NewChild(t, childEnv+"=block")
	p.Pipes()
	p.Timeout = 100 * time.Millisecond
	p.Start()
	if err := p.Wait(10 * time.Second); err == nil {
		t.Error("killed after its Timeout, the process exited with no error")
	}
}

func TestBuildCmd(t *testing.T) {
	a := BuildCmd(t, SimdPkg)
	if fi, err := os.Stat(a); err != nil || fi.Mode()&0o111 == 0 && runtime.GOOS != "windows" {
		t.Fatalf("BuildCmd = %s: %v", a, err)
	}
	if b := BuildCmd(t, SimdPkg); b != a {
		t.Errorf("second BuildCmd = %s, first %s", b, a)
	}
	f := &fatalTB{TB: t}
	if msg := f.fatal(func() { BuildCmd(f, "github.com/vchan-go/vchan/no/such/command") }); !strings.Contains(msg, "go build github.com/vchan-go/vchan/no/such/command") {
		t.Errorf("BuildCmd of a missing package failed with %q", msg)
	}
}

func TestBuildCmdNeedsRun(t *testing.T) {
	setRunning(false)
	defer setRunning(true)
	f := &fatalTB{TB: t}
	if msg := f.fatal(func() { BuildCmd(f, SimdPkg) }); !strings.Contains(msg, "os.Exit(testutil.Run(m))") {
		t.Errorf("BuildCmd outside Run failed with %q", msg)
	}
}
