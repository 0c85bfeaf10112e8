package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vchan-go/vchan/vchan"
)

// errStopped ends a send that was told to stop because the peer closed.
var errStopped = errors.New("stopped")

// errPeerLeftInput reports that the peer closed while input was waiting.
var errPeerLeftInput = errors.New("the peer closed the connection before all of the input was sent")

// local is the non-vchan end of a session: stdin/stdout, a command, a socket.
type local interface {
	// send copies the local input into c until it ends (nil), stop is
	// closed (errStopped, or errPeerLeftInput if input was pending), or
	// something fails. It adds what c accepted to n.
	send(c *vchan.Conn, stop <-chan struct{}, n *atomic.Int64) error
	// Write delivers data from the vchan.
	io.Writer
	// closeWrite tells the local side that the peer has closed.
	closeWrite()
	// close releases the local side once the session is over.
	close()
	// keepOpenIfIdle reports whether input that ends before anything was
	// sent should leave the vchan open for receiving (stdin: /dev/null).
	keepOpenIfIdle() bool
	// String names it for -v.
	String() string
}

// session runs one connection: local input → c and c → local output, until
// the peer closes or the local input ends (then Flush, linger per -q,
// Close). It returns the first failure.
func (a *app) session(c *vchan.Conn, l local) error {
	defer a.track(c)()
	start := time.Now()
	rs, ws := c.RingSizes()
	a.logf("connected %s <-> %s (rings: %s in, %s out), local end: %s", c.LocalAddr(), c.RemoteAddr(), size(int64(rs)), size(int64(ws)), l)

	var sent, recv atomic.Int64
	stop := make(chan struct{})
	upc := make(chan error, 1)
	go func() { upc <- l.send(c, stop, &sent) }()
	downc := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(countingWriter{l, &recv}, c, make([]byte, bufSize))
		downc <- err
	}()
	stopProgress := a.progress(l, &sent, &recv, start)

	var upErr, downErr error
	var closedByUs bool
	closeConn := func() { closedByUs = true; c.Close() }
	select {
	case upErr = <-upc:
		switch {
		case upErr != nil:
			closeConn()
		case sent.Load() == 0 && l.keepOpenIfIdle():
			// Nothing to send: just receive until the peer closes.
		default:
			// No half-close on the wire: make sure the peer has everything,
			// then close (after -q).
			if err := c.Flush(); err != nil {
				upErr = err
				closeConn()
				break
			}
			switch q := a.o.quit; {
			case q == 0:
				closeConn()
			case q > 0:
				t := time.NewTimer(time.Duration(q * float64(time.Second)))
				select {
				case downErr = <-downc:
					downc <- downErr
				case <-t.C:
					closeConn()
				}
				t.Stop()
			}
		}
		downErr = <-downc
	case downErr = <-downc:
		// The peer closed (or reading failed): the input has nowhere to go.
		close(stop)
		if err := <-upc; err != errStopped {
			upErr = err
		}
	}
	select {
	case <-stop:
	default:
		close(stop)
	}
	if downErr == nil {
		l.closeWrite()
	}
	c.Close()
	l.close()
	stopProgress()

	if closedByUs && errors.Is(downErr, net.ErrClosed) {
		downErr = nil
	}
	d := time.Since(start)
	a.logf("closed %s: sent %s, received %s in %v (%s)", c.RemoteAddr(), size(sent.Load()), size(recv.Load()), d.Round(time.Millisecond), rate(sent.Load()+recv.Load(), d))
	if upErr != nil {
		return upErr
	}
	return downErr
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// progress prints a progress line on a terminal stderr for a stdin/stdout
// session lasting more than a second; the returned func clears it.
func (a *app) progress(l local, sent, recv *atomic.Int64, start time.Time) func() {
	if _, ok := l.(*stdioLocal); !ok || !isTerminal(2) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-done:
				if shown {
					a.errMu.Lock()
					fmt.Fprint(os.Stderr, "\r\033[K")
					a.errMu.Unlock()
				}
				return
			case <-t.C:
				s, r := sent.Load(), recv.Load()
				a.errMu.Lock()
				fmt.Fprintf(os.Stderr, "\r\033[Kvchan-cat: sent %s, received %s (%s)", size(s), size(r), rate(s+r, time.Since(start)))
				a.errMu.Unlock()
				shown = true
			}
		}
	}()
	return func() { close(done); <-finished }
}

func size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return size(int64(float64(n)/d.Seconds())) + "/s"
}

// stdioLocal is stdin and stdout.
type stdioLocal struct {
	in  *pump
	out io.Writer
}

func (s *stdioLocal) send(c *vchan.Conn, stop <-chan struct{}, n *atomic.Int64) error {
	return s.in.send(c, stop, n)
}
func (s *stdioLocal) Write(p []byte) (int, error) { return s.out.Write(p) }
func (s *stdioLocal) closeWrite()                 {}
func (s *stdioLocal) close()                      {}
func (s *stdioLocal) keepOpenIfIdle() bool        { return true }
func (s *stdioLocal) String() string              { return "stdin/stdout" }

// pump reads stdin ahead, in large chunks, for one session after another
// (-k): what one session could not send goes to the next.
type pump struct {
	r      io.Reader
	once   sync.Once
	chunks chan *chunk // closed at the end of the input, after err is set
	free   chan *chunk
	err    error
	cur    *chunk // a chunk a session did not finish
}

type chunk struct {
	buf  []byte
	data []byte
}

func newPump(r io.Reader) *pump { return &pump{r: r} }

func (p *pump) start() {
	const depth = 2 // one chunk being sent while the next one is read
	p.chunks = make(chan *chunk, depth)
	p.free = make(chan *chunk, depth)
	for range depth {
		p.free <- &chunk{buf: make([]byte, bufSize)}
	}
	go func() {
		for {
			ch := <-p.free
			n, err := p.r.Read(ch.buf)
			if n > 0 {
				ch.data = ch.buf[:n]
				p.chunks <- ch
			} else {
				p.free <- ch
			}
			if err != nil {
				if err != io.EOF {
					p.err = err
				}
				close(p.chunks)
				return
			}
		}
	}()
}

// send is called by one session at a time.
func (p *pump) send(c *vchan.Conn, stop <-chan struct{}, n *atomic.Int64) error {
	p.once.Do(p.start)
	for {
		if p.cur == nil {
			select {
			case ch, ok := <-p.chunks:
				if !ok {
					return p.err
				}
				p.cur = ch
			case <-stop:
				// Input waiting when the peer left is data lost.
				select {
				case ch, ok := <-p.chunks:
					if ok {
						p.cur = ch
						return fmt.Errorf("%s: %w", c.RemoteAddr(), errPeerLeftInput)
					}
				default:
				}
				return errStopped
			}
		}
		m, err := c.Write(p.cur.data)
		n.Add(int64(m))
		p.cur.data = p.cur.data[m:]
		if err != nil {
			return err
		}
		p.free <- p.cur
		p.cur = nil
	}
}

// deadlineReader is a reader whose blocked Read a deadline interrupts.
type deadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// sendFrom copies r into c until r ends, fails, or stop is closed.
func sendFrom(c *vchan.Conn, r deadlineReader, stop <-chan struct{}, n *atomic.Int64) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-stop:
			r.SetReadDeadline(time.Unix(1, 0))
		case <-done:
		}
	}()
	buf := make([]byte, bufSize)
	for {
		m, err := r.Read(buf)
		if m > 0 {
			w, werr := c.Write(buf[:m])
			n.Add(int64(w))
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			select {
			case <-stop:
				return errStopped
			default:
			}
			return err
		}
	}
}

// sockLocal is a unix or TCP connection.
type sockLocal struct {
	c net.Conn
}

func newSockLocal(c net.Conn) *sockLocal { return &sockLocal{c: c} }

func (s *sockLocal) send(c *vchan.Conn, stop <-chan struct{}, n *atomic.Int64) error {
	return sendFrom(c, s.c, stop, n)
}
func (s *sockLocal) Write(p []byte) (int, error) { return s.c.Write(p) }
func (s *sockLocal) closeWrite() {
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
func (s *sockLocal) close()               { s.c.Close() }
func (s *sockLocal) keepOpenIfIdle() bool { return false }
func (s *sockLocal) String() string {
	return s.c.LocalAddr().Network() + " " + s.c.RemoteAddr().String()
}

// execLocal is a command run with /bin/sh -c, its stdin and stdout on pipes.
type execLocal struct {
	line    string
	cmd     *exec.Cmd
	stdin   *os.File // write end of the command's stdin
	stdout  *os.File // read end of the command's stdout
	discard bool     // the command stopped reading its input
	waited  chan struct{}
	waitErr error
}

func startCommand(line string, c *vchan.Conn) (*execLocal, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	cmd.Env = append(os.Environ(), "VCHAN_LOCAL_ADDR="+c.LocalAddr().String(), "VCHAN_REMOTE_ADDR="+c.RemoteAddr().String())
	ownGroup(cmd) // to stop the command's children too
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("-e %q: %w", line, err)
	}
	l := &execLocal{line: line, cmd: cmd, stdin: inW, stdout: outR, waited: make(chan struct{})}
	go func() {
		l.waitErr = cmd.Wait()
		close(l.waited)
	}()
	return l, nil
}

func (e *execLocal) send(c *vchan.Conn, stop <-chan struct{}, n *atomic.Int64) error {
	return sendFrom(c, e.stdout, stop, n)
}

// Write feeds the command; once it stops reading, further input is dropped,
// so that its output still gets through.
func (e *execLocal) Write(p []byte) (int, error) {
	if !e.discard {
		if _, err := e.stdin.Write(p); err != nil {
			e.discard = true
		}
	}
	return len(p), nil
}

func (e *execLocal) closeWrite() { e.stdin.Close() }

// close ends the command: EOF on its input, its output closed (a write gets
// SIGPIPE), then SIGTERM and SIGKILL to its process group if it lingers.
func (e *execLocal) close() {
	e.stdin.Close()
	e.stdout.Close()
	for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		select {
		case <-e.waited:
			return
		case <-time.After(time.Second):
			signalGroup(e.cmd.Process, s)
		}
	}
	<-e.waited
}

func (e *execLocal) keepOpenIfIdle() bool { return false }
func (e *execLocal) String() string {
	return fmt.Sprintf("command %q (pid %d)", e.line, e.cmd.Process.Pid)
}
