package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// SimdPkg is the import path of the simulator daemon's command.
const SimdPkg = "github.com/vchan-go/vchan/cmd/vchan-simd"

// buildTimeout bounds one go build.
const buildTimeout = 5 * time.Minute

// builds holds what BuildCmd built in this test binary.
var builds struct {
	mu      sync.Mutex
	running bool   // Run is running the tests
	dir     string // the binaries, made on the first build; Run removes it
	cmds    map[string]*build
}

type build struct {
	once sync.Once
	dir  string // where the binary goes: one directory per package, as two commands may have the same name
	bin  string
	err  error
}

// Run runs the tests of m and then removes what BuildCmd built. It returns
// m.Run's exit code: a TestMain calls os.Exit(testutil.Run(m)), or Main.
func Run(m *testing.M) int {
	setRunning(true)
	defer setRunning(false)
	return m.Run()
}

// Main is a TestMain for a test binary that NewChild re-executes as a
// helper process: if the environment variable env is set, the binary is
// that process: it runs child with the variable's value and exits, 0 if
// child returns nil, else 1 after printing the error on stderr. Otherwise
// it runs the tests (Run) and exits with their code.
func Main(m *testing.M, env string, child func(value string) error) {
	if v := os.Getenv(env); v != "" {
		if err := child(v); err != nil {
			fmt.Fprintf(os.Stderr, "%s=%s: %v\n", env, v, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(Run(m))
}

// setRunning records whether Run is running the tests; when they are over
// it removes what BuildCmd built.
func setRunning(running bool) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	builds.running = running
	if !running && builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.cmds = "", nil
	}
}

// BuildCmd builds the command pkg (an import path of this module, such as
// SimdPkg) once per test binary and returns the path of the binary. It
// builds without cgo and without $GOFLAGS, so without -race whatever the
// tests run with: the processes are what is tested, and they must be fast.
// The test binary's TestMain must call Run, which removes the binaries.
func BuildCmd(tb testing.TB, pkg string) string {
	tb.Helper()
	b, err := buildFor(pkg)
	if err != nil {
		tb.Fatal(err)
	}
	b.once.Do(func() { b.bin, b.err = goBuild(b.dir, pkg) })
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.bin
}

// buildFor returns the build of pkg.
func buildFor(pkg string) (*build, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if !builds.running {
		return nil, errors.New("testutil.BuildCmd: the test binary's TestMain must call os.Exit(testutil.Run(m)), which removes the binaries")
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "testutil-bin")
		if err != nil {
			return nil, err
		}
		builds.dir = dir
		builds.cmds = make(map[string]*build)
	}
	b := builds.cmds[pkg]
	if b == nil {
		b = &build{dir: filepath.Join(builds.dir, strconv.Itoa(len(builds.cmds)))}
		builds.cmds[pkg] = b
	}
	return b, nil
}

// goBuild builds pkg into dir.
func goBuild(dir, pkg string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, path.Base(pkg))
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	gobin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}
