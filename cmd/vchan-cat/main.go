// Command vchan-cat is netcat for Xen domains: it connects its standard
// input and output, a command, or a local socket to a vchan, the shared-memory
// stream between two domains (wire-compatible with libxenvchan). See
// README.md.
//
// Usage:
//
//	vchan-cat [flags] -l <client-domid> <port|xenstore-path>   listen (server)
//	vchan-cat [flags] <server-domid> <port|xenstore-path>      connect (client)
//
// A server listens for one client domain; the client names the server's
// domain and the same port (or absolute xenstore path). By default stdin goes
// to the vchan and the vchan goes to stdout. Instead:
//
//	-e CMD               run "/bin/sh -c CMD" for each connection, its stdin
//	                     and stdout on the vchan
//	-unix-connect PATH   (with -l) bridge each accepted vchan to a new
//	-tcp-connect ADDR    connection to a local unix socket or TCP address
//	-unix-listen PATH    (without -l) accept local connections and give each
//	-tcp-listen ADDR     one a new vchan to the server
//
// -k keeps listening (vchan clients one after another with stdin/stdout, at
// once with -e or a bridge; local clients at once). Flags may come before or
// after the arguments.
//
// The vchan protocol has no half-close. When the local input ends (stdin
// EOF, the command closed its output, the local client closed), vchan-cat
// waits until the peer has read everything it sent, then closes the vchan,
// so the peer reads all of it and then EOF; -q SECS waits that long for the
// peer to close first (a negative value: as long as it takes), to receive a
// reply. A stdin that ends before anything was sent (e.g. /dev/null) does not
// close the vchan: vchan-cat then only receives, until the peer closes.
//
// It uses Xen when /dev/xen/evtchn exists, else the vchan-simd simulator
// (-host and VCHAN_HOST override; in the simulator, -domid or VCHAN_HOST=sim:N
// says which domain this process is). It exits 0 when the connection ended
// cleanly, else 1 with one line on stderr; 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vchan-go/vchan/internal/hostenv"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/vchan"
)

const (
	defaultRingSize = 64 << 10
	bufSize         = 256 << 10 // copy buffer: large, for throughput
	xenEvtchnDevice = "/dev/xen/evtchn"
)

// options are the parsed command line.
type options struct {
	listen      bool
	keep        bool
	exec        string
	unixListen  string
	unixConnect string
	tcpListen   string
	tcpConnect  string
	readSize    int
	writeSize   int
	timeout     time.Duration
	quit        float64
	verbose     bool
	host        string
	domid       domidFlag
	simDir      string

	peer uint16 // the client domain (-l) or the server domain
	port string // port or xenstore path
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageText = `usage: vchan-cat [flags] -l <client-domid> <port|xenstore-path>   (listen)
       vchan-cat [flags] <server-domid> <port|xenstore-path>      (connect)

netcat for Xen domains: stdin goes to the vchan, the vchan goes to stdout.
A port names /local/domain/<server>/data/vchan/<client>/<port> in xenstore.

End of input: the vchan protocol has no half-close. When stdin ends,
vchan-cat waits until the peer has read everything sent, then closes (the
peer reads it all, then EOF), and exits once the output is written. -q SECS
keeps receiving up to SECS seconds first (negative: until the peer closes),
e.g. to read a reply. If stdin ends before anything was sent (/dev/null),
vchan-cat just receives until the peer closes.

Host: Xen if /dev/xen/evtchn exists, else the simulator (vchan-simd), which
needs -domid N (or VCHAN_HOST=sim:N) to know which domain this process is.

Exit status: 0 clean close, 1 failure (one line on stderr), 2 usage.

Flags:
`

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("vchan-cat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&o.listen, "l", false, "listen: be the vchan server for domain <client-domid>")
	fs.BoolVar(&o.keep, "k", false, "keep listening for further clients (with -l, -unix-listen or -tcp-listen)")
	fs.StringVar(&o.exec, "e", "", "run `CMD` with /bin/sh -c for each connection, its stdin and stdout on the vchan")
	fs.StringVar(&o.unixListen, "unix-listen", "", "connect mode: accept connections on unix socket `PATH`, one vchan each")
	fs.StringVar(&o.unixConnect, "unix-connect", "", "listen mode: bridge each vchan to a new connection to unix socket `PATH`")
	fs.StringVar(&o.tcpListen, "tcp-listen", "", "connect mode: accept TCP connections on `ADDR` (host:port), one vchan each")
	fs.StringVar(&o.tcpConnect, "tcp-connect", "", "listen mode: bridge each vchan to a new TCP connection to `ADDR`")
	for _, name := range []string{"r", "read-size"} {
		fs.IntVar(&o.readSize, name, defaultRingSize, "listen mode: size in `bytes` of the ring this side reads (max 1 MiB)")
	}
	for _, name := range []string{"w", "write-size"} {
		fs.IntVar(&o.writeSize, name, defaultRingSize, "listen mode: size in `bytes` of the ring this side writes (max 1 MiB)")
	}
	fs.DurationVar(&o.timeout, "t", 0, "connect mode: wait up to `DURATION` for a server that is not listening yet (default: fail at once, as nc does)")
	fs.Float64Var(&o.quit, "q", 0, "after the input ends and the peer has read it, receive up to `SECS` seconds before closing (negative: until the peer closes)")
	fs.BoolVar(&o.verbose, "v", false, "report connections and byte counts on stderr")
	fs.StringVar(&o.host, "host", "", "`kind` of host: xen or sim (default: $VCHAN_HOST, else xen if "+xenEvtchnDevice+" exists, else sim)")
	fs.Var(&o.domid, "domid", "simulator: the domain `N` this process is (default: VCHAN_HOST=sim:N, else $"+hostenv.SimDomIDVar+")")
	fs.StringVar(&o.simDir, "sim-dir", "", "simulator: its directory (default: $"+simproto.DirEnv+", else $XDG_RUNTIME_DIR/vchan-sim, else /tmp/vchan-sim-<uid>)")
	return fs
}

// domidFlag is -domid, which may be unset.
type domidFlag struct {
	id  uint16
	set bool
}

func (d *domidFlag) String() string {
	if d == nil || !d.set {
		return ""
	}
	return strconv.Itoa(int(d.id))
}

func (d *domidFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return errors.New("want a domain ID 0..65535")
	}
	*d = domidFlag{uint16(n), true}
	return nil
}

func printUsage(w io.Writer) {
	var o options
	fs := newFlagSet(&o)
	fmt.Fprint(w, usageText)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// parseArgs parses the command line. Flags may be mixed with the two
// arguments, as nc allows.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != 2 {
		if o.listen {
			return nil, usageError{"want two arguments: -l <client-domid> <port|xenstore-path>"}
		}
		return nil, usageError{"want two arguments: <server-domid> <port|xenstore-path> (or -l <client-domid> <port|xenstore-path> to listen)"}
	}
	id, err := strconv.ParseUint(pos[0], 10, 16)
	if err != nil || id > vchan.MaxDomainID {
		return nil, usageError{fmt.Sprintf("domain ID %q: want a number 0..%d (higher IDs are reserved by Xen)", pos[0], vchan.MaxDomainID)}
	}
	if _, err := vchan.ParseAddr(pos[0] + ":" + pos[1]); err != nil {
		return nil, usageError{fmt.Sprintf("%q is neither a port ([A-Za-z0-9_-]+) nor an absolute xenstore path of at most %d characters", pos[1], vchan.MaxPathLen)}
	}
	o.peer, o.port = uint16(id), pos[1]

	var locals []string
	for _, f := range []struct{ name, v string }{{"-e", o.exec}, {"-unix-listen", o.unixListen}, {"-unix-connect", o.unixConnect}, {"-tcp-listen", o.tcpListen}, {"-tcp-connect", o.tcpConnect}} {
		if f.v != "" {
			locals = append(locals, f.name)
		}
	}
	if len(locals) > 1 {
		return nil, usageError{fmt.Sprintf("%s exclude each other", strings.Join(locals, " and "))}
	}
	if o.listen && (o.unixListen != "" || o.tcpListen != "") {
		return nil, usageError{"-unix-listen and -tcp-listen give local clients a vchan to a server: use them without -l (with -l, use -unix-connect or -tcp-connect)"}
	}
	if o.keep && !o.listen && o.unixListen == "" && o.tcpListen == "" {
		return nil, usageError{"-k needs -l, -unix-listen or -tcp-listen"}
	}
	for _, s := range []int{o.readSize, o.writeSize} {
		if s < 0 || s > vchan.MaxRingSize {
			return nil, usageError{fmt.Sprintf("ring size %d: want 0..%d bytes", s, vchan.MaxRingSize)}
		}
	}
	if o.timeout < 0 {
		return nil, usageError{"-t: want a duration ≥ 0"}
	}
	switch o.host {
	case "", "xen", "sim":
	default:
		return nil, usageError{fmt.Sprintf("-host %q: want xen or sim", o.host)}
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vchan-cat: %v\n(vchan-cat -h for help)\n", err)
		return 2
	}
	a := &app{o: o, conns: map[io.Closer]struct{}{}, stdin: newPump(os.Stdin)}
	host, notice, err := chooseHost(o)
	if err != nil {
		a.errorf("%v", err)
		return 1
	}
	defer host.Close()
	if notice != "" {
		a.errorf("%s", notice)
	}
	a.host = host

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		a.shutdown()
		host.Close()
		os.Exit(128 + int(s.(syscall.Signal)))
	}()

	if o.listen {
		err = a.runListen()
	} else {
		err = a.runConnect()
	}
	if err != nil {
		if a.isClosing() {
			select {} // the signal handler exits
		}
		a.errorf("%s", describe(err))
		return 1
	}
	return 0
}

// chooseHost picks Xen or the simulator: -host, else $VCHAN_HOST, else Xen
// if its event channel device exists. notice is the line to print when the
// simulator was chosen for lack of Xen.
func chooseHost(o *options) (h *vchan.Host, notice string, err error) {
	spec, err := hostenv.Parse()
	if err != nil {
		return nil, "", err
	}
	kind := o.host
	if kind == "" {
		kind = spec.Kind
	}
	auto := false
	if kind == "" {
		kind, auto = "sim", true
		if _, err := os.Stat(xenEvtchnDevice); err == nil {
			kind = "xen"
		}
	}
	if kind == "xen" {
		return vchan.XenHost(), "", nil
	}
	domid := spec.Domain
	if o.domid.set {
		domid = int(o.domid.id)
	}
	if domid < 0 {
		why := "in the simulator"
		if auto {
			why = "no Xen here (no " + xenEvtchnDevice + "), so the simulator is used, and"
		}
		return nil, "", fmt.Errorf("%s each process must say which domain it is: add -domid N (or set %s=sim:N); the server and the client need different IDs", why, vchan.HostEnv)
	}
	dir := o.simDir
	if dir == "" {
		dir = simproto.DefaultDir()
	}
	h, err = vchan.SimHost(dir, uint16(domid))
	if err != nil {
		return nil, "", err
	}
	if auto {
		notice = fmt.Sprintf("no Xen here, using the simulator in %s as domain %d", dir, domid)
	}
	return h, notice, nil
}

// app is one run of vchan-cat.
type app struct {
	o     *options
	host  *vchan.Host
	stdin *pump

	mu      sync.Mutex
	conns   map[io.Closer]struct{} // listeners and connections to close on a signal
	closing bool
	errMu   sync.Mutex // one line at a time on stderr
}

func (a *app) errorf(format string, args ...any) {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	fmt.Fprintf(os.Stderr, "vchan-cat: "+format+"\n", args...)
}

func (a *app) logf(format string, args ...any) {
	if a.o.verbose {
		a.errorf(format, args...)
	}
}

// track registers c to be closed on a signal; the returned func forgets it.
func (a *app) track(c io.Closer) (untrack func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		c.Close()
	}
	a.conns[c] = struct{}{}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.conns, c)
	}
}

// shutdown closes every listener (removing its xenstore entry) and every
// connection (delivering what was written).
func (a *app) shutdown() {
	a.mu.Lock()
	a.closing = true
	cs := make([]io.Closer, 0, len(a.conns))
	for c := range a.conns {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (a *app) isClosing() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closing
}

func (a *app) config() *vchan.Config {
	return &vchan.Config{Host: a.host, ReadBufferSize: a.o.readSize, WriteBufferSize: a.o.writeSize, WaitForServer: a.o.timeout > 0}
}

// concurrent reports whether several connections may run at once: each
// needs its own local end, which stdin and stdout are not.
func (a *app) concurrent() bool {
	return a.o.exec != "" || a.o.unixConnect != "" || a.o.tcpConnect != ""
}

func (a *app) runListen() error {
	ln, err := vchan.Listen(a.o.peer, a.o.port, a.config())
	if err != nil {
		return err
	}
	defer a.track(ln)()
	defer ln.Close()
	a.logf("listening on %s for domain %d", ln.Addr(), a.o.peer)
	if !a.o.keep {
		c, err := ln.AcceptVchan()
		ln.Close() // one client: withdraw the next ring now
		if err != nil {
			return err
		}
		return a.serve(c)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.AcceptVchan()
		if err != nil {
			return err
		}
		if !a.concurrent() {
			if err := a.serve(c); err != nil && !a.isClosing() {
				a.errorf("%s", describe(err))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.serve(c); err != nil && !a.isClosing() {
				a.errorf("%s", describe(err))
			}
		}()
	}
}

func (a *app) runConnect() error {
	network, addr := "unix", a.o.unixListen
	if a.o.tcpListen != "" {
		network, addr = "tcp", a.o.tcpListen
	}
	if addr == "" {
		c, err := a.dial()
		if err != nil {
			return err
		}
		return a.serve(c)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	defer a.track(l)()
	defer l.Close()
	a.logf("listening on %s %s; each connection gets a vchan to domain %d port %s", network, l.Addr(), a.o.peer, a.o.port)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		lc, err := l.Accept()
		if err != nil {
			return err
		}
		a.logf("local connection from %s %s", network, lc.RemoteAddr())
		if !a.o.keep {
			l.Close()
			return a.bridgeLocal(lc)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.bridgeLocal(lc); err != nil && !a.isClosing() {
				a.errorf("%s", describe(err))
			}
		}()
	}
}

// bridgeLocal gives an accepted local connection its vchan.
func (a *app) bridgeLocal(lc net.Conn) error {
	untrack := a.track(lc)
	c, err := a.dial()
	untrack()
	if err != nil {
		lc.Close()
		return err
	}
	return a.session(c, newSockLocal(lc))
}

func (a *app) dial() (*vchan.Conn, error) {
	// Without -t a missing server is refused at once; a busy one (between
	// two Accepts) is waited for, up to vchan.DefaultDialTimeout.
	wait := vchan.DefaultDialTimeout
	if a.o.timeout > 0 {
		wait = a.o.timeout
	}
	ctx, cancelWait := context.WithTimeout(context.Background(), wait)
	defer cancelWait()
	// A signal during the wait ends it.
	ctx, cancel := context.WithCancel(ctx)
	defer a.track(&cancelCloser{cancel})()
	return vchan.DialContext(ctx, a.o.peer, a.o.port, a.config())
}

// cancelCloser cancels a context when closed.
type cancelCloser struct{ cancel context.CancelFunc }

func (c *cancelCloser) Close() error { c.cancel(); return nil }

// serve connects an established vchan to the local end the flags chose.
func (a *app) serve(c *vchan.Conn) error {
	switch {
	case a.o.exec != "":
		l, err := startCommand(a.o.exec, c)
		if err != nil {
			c.Close()
			return err
		}
		return a.session(c, l)
	case a.o.unixConnect != "" || a.o.tcpConnect != "":
		network, addr := "unix", a.o.unixConnect
		if a.o.tcpConnect != "" {
			network, addr = "tcp", a.o.tcpConnect
		}
		lc, err := net.DialTimeout(network, addr, 30*time.Second)
		if err != nil {
			c.Close()
			return err
		}
		return a.session(c, newSockLocal(lc))
	default:
		return a.session(c, &stdioLocal{in: a.stdin, out: os.Stdout})
	}
}

// describe adds a hint to errors whose cause is not obvious from the error
// text alone.
func describe(err error) string {
	switch {
	case errors.Is(err, syscall.EPIPE) && isVchanErr(err):
		return err.Error() + " (the peer closed or went away before reading everything)"
	}
	return err.Error()
}

func isVchanErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Net == vchan.Network
}
