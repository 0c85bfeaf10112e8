package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: it holds what a
// process writes while the test reads it.
type SyncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed by the next Write; nil while nobody waits
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// from returns what the buffer holds from offset off, and a channel that
// the next Write closes.
func (s *SyncBuffer) from(off int) (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return string(s.b.Bytes()[off:]), s.changed
}

// Proc is a process under test. NewProc prepares it; the test may then set
// Cmd's Env, Dir, Stdin or Stdout, Timeout, or call Pipes, before Start.
// Its stderr goes to Stderr, where WaitLine and WaitFor find its lines.
// When the test ends it is killed if it still runs, and if the test failed
// its stderr is logged.
type Proc struct {
	Name    string         // the program's base name and arguments, for messages
	Cmd     *exec.Cmd      // Stderr is the Proc's: do not set it
	Stderr  *SyncBuffer    // everything the process wrote on stderr
	Stdin   io.WriteCloser // the process's stdin, after Pipes
	Stdout  *bufio.Reader  // the process's stdout, after Pipes
	Timeout time.Duration  // if > 0, the process is killed this long after Start

	tb        testing.TB
	childEnds []*os.File    // the process's ends of the pipes, closed once it has them
	stderrEOF chan struct{} // closed when all of stderr is in Stderr
	stderrEnd atomic.Bool   // set just before stderrEOF is closed
	done      chan struct{} // closed when the process has exited
	err       error         // how it exited, once done is closed

	mu   sync.Mutex // guards next
	next int        // offset in Stderr of the first line WaitFor has not looked at
}

// NewProc prepares prog with args as a process of the test tb.
func NewProc(tb testing.TB, prog string, args ...string) *Proc {
	name := filepath.Base(prog)
	if len(args) > 0 {
		name += " " + strings.Join(args, " ")
	}
	p := &Proc{Name: name, Cmd: exec.Command(prog, args...), Stderr: new(SyncBuffer), tb: tb,
		stderrEOF: make(chan struct{}), done: make(chan struct{})}
	// Bounds Wait when something the process started holds a pipe that
	// exec copies (a Stdin or Stdout that is not an *os.File).
	p.Cmd.WaitDelay = 5 * time.Second
	return p
}

// NewChild prepares this test binary, re-executed to run no test, with env
// ("NAME=value") added to the environment: its TestMain sees the variable
// and acts as the helper process instead of running the tests.
func NewChild(tb testing.TB, env ...string) *Proc {
	p := NewProc(tb, os.Args[0], "-test.run=^$")
	p.Name = filepath.Base(os.Args[0]) + " " + strings.Join(env, " ")
	p.Cmd.Env = append(os.Environ(), env...)
	return p
}

// Pipes gives the process a stdin and a stdout that the test drives, and
// sets p.Stdin and p.Stdout. They are os.Pipes, not Cmd.StdinPipe and
// StdoutPipe, which Wait closes while the test may still be reading or
// writing: here a write after the process exited fails with EPIPE, and its
// output stays readable. The returned stdout reads through p.Stdout's
// buffer. The test's cleanup closes both.
func (p *Proc) Pipes() (stdin io.WriteCloser, stdout io.ReadCloser) {
	p.tb.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		p.tb.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		p.tb.Fatal(err)
	}
	p.Cmd.Stdin, p.Cmd.Stdout = inR, outW
	p.childEnds = append(p.childEnds, inR, outW)
	p.Stdin, p.Stdout = inW, bufio.NewReader(outR)
	p.tb.Cleanup(func() {
		inW.Close()
		outR.Close()
		for _, f := range p.childEnds { // Start was not reached
			f.Close()
		}
	})
	return inW, bufferedPipe{p.Stdout, outR}
}

// bufferedPipe is the read end of a pipe, read through a bufio.Reader.
type bufferedPipe struct {
	*bufio.Reader
	f *os.File
}

func (b bufferedPipe) Close() error { return b.f.Close() }

// Start starts the process.
func (p *Proc) Start() {
	p.tb.Helper()
	errR, errW, err := os.Pipe()
	if err != nil {
		p.tb.Fatal(err)
	}
	p.Cmd.Stderr = errW
	if err := p.Cmd.Start(); err != nil {
		errR.Close()
		errW.Close()
		p.tb.Fatalf("%s: %v", p.Name, err)
	}
	errW.Close()
	for _, f := range p.childEnds {
		f.Close()
	}
	p.childEnds = nil
	go func() {
		io.Copy(p.Stderr, errR)
		errR.Close()
		p.stderrEnd.Store(true)
		close(p.stderrEOF)
	}()
	var timer *time.Timer
	if p.Timeout > 0 {
		timer = time.AfterFunc(p.Timeout, func() { p.Cmd.Process.Kill() })
	}
	go func() {
		p.err = p.Cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		// Done means the output is in too: what the process wrote before
		// it exited is still in the pipe when Wait returns (seen under
		// load: an exit code checked, its one line of stderr not yet
		// copied). A child that inherited the pipe may keep it open; it
		// is not waited for beyond a bound.
		select {
		case <-p.stderrEOF:
		case <-time.After(2 * time.Second):
		}
		close(p.done)
	}()
	p.tb.Cleanup(func() {
		p.Kill()
		if s := p.Stderr.String(); p.tb.Failed() && s != "" {
			p.tb.Logf("%s: stderr:\n%s", p.Name, s)
		}
	})
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process exited (Cmd.Wait's error), once Done is closed.
func (p *Proc) Err() error { return p.err }

// ExitCode is, once Done is closed, the process's exit code: 128+n if
// signal n killed it, -2 if waiting for it failed otherwise.
func (p *Proc) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if sig, ok := exitSignal(ee.ProcessState); ok {
			return 128 + sig
		}
		return ee.ExitCode()
	}
	if p.err != nil {
		return -2
	}
	return 0
}

// Wait waits up to timeout for the process to exit and returns how it
// exited. It fails the test if the process still runs then.
func (p *Proc) Wait(timeout time.Duration) error {
	p.tb.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.tb.Fatalf("%s still running after %v; stderr:\n%s", p.Name, timeout, p.Stderr)
		return nil
	}
}

// MustExit fails the test unless the process exits within timeout with
// exit code want (see ExitCode).
func (p *Proc) MustExit(timeout time.Duration, want int) {
	p.tb.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.tb.Fatalf("%s: still running after %v, want exit code %d; stderr:\n%s", p.Name, timeout, want, p.Stderr)
	}
	if got := p.ExitCode(); got != want {
		p.tb.Fatalf("%s: exit code %d, want %d; stderr:\n%s", p.Name, got, want, p.Stderr)
	}
}

// Signal sends sig to the process; it fails the test if that fails (the
// process has exited, say).
func (p *Proc) Signal(sig os.Signal) {
	p.tb.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.tb.Fatalf("%s: signal %v: %v", p.Name, sig, err)
	}
}

// Kill kills the process (SIGKILL) unless it has exited, and waits for it
// to exit.
func (p *Proc) Kill() {
	if p.Cmd.Process == nil || p.Exited() {
		return
	}
	p.Cmd.Process.Kill()
	<-p.done
}

// WaitLine returns the next line of the process's stderr that starts with
// prefix, without its newline. Lines before it are passed over: the next
// WaitLine or WaitFor looks at the lines after it. It fails the test if no
// such line comes within timeout or the process closes its stderr first.
func (p *Proc) WaitLine(prefix string, timeout time.Duration) string {
	p.tb.Helper()
	return p.WaitFor(prefix, func(line string) bool { return strings.HasPrefix(line, prefix) }, timeout)
}

// WaitFor is WaitLine for the next line for which match returns true;
// what describes it in messages.
func (p *Proc) WaitFor(what string, match func(line string) bool, timeout time.Duration) string {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		eof := p.stderrEnd.Load() // before reading: then Stderr holds everything
		text, changed := p.Stderr.from(p.next)
		for {
			i := strings.IndexByte(text, '\n')
			if i < 0 {
				break
			}
			line := text[:i]
			text = text[i+1:]
			p.next += i + 1
			if match(line) {
				return line
			}
		}
		if eof {
			p.next += len(text)
			if text != "" && match(text) { // a last line without a newline
				return text
			}
			select {
			case <-p.done:
				p.tb.Fatalf("%s exited (%v) before printing %q; stderr:\n%s", p.Name, p.err, what, p.Stderr)
			case <-timer.C:
				p.tb.Fatalf("%s closed its stderr before printing %q; stderr:\n%s", p.Name, what, p.Stderr)
			}
		}
		select {
		case <-changed:
		case <-p.stderrEOF:
		case <-timer.C:
			p.tb.Fatalf("%s: no %q within %v; stderr:\n%s", p.Name, what, timeout, p.Stderr)
		}
	}
}
