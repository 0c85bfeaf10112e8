//go:build linux

package simdaemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/gnt/gntsim"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/internal/xenstore/xsserver"
	"github.com/vchan-go/vchan/internal/xenstore/xssim"
)

// Daemon is a running simulated Xen host. Start one per directory.
type Daemon struct {
	dir    string
	logf   func(format string, args ...any)
	lock   *os.File
	store  *xssim.Store
	xs     *xsserver.Server
	events *evtsim.Switch
	grants *gntsim.Table
	ctl    *net.UnixListener

	// life serialises domain creation and release, which call into the
	// store and create or remove sockets; it is taken before mu.
	life sync.Mutex

	// mu guards everything below.
	mu      sync.Mutex
	doms    map[uint16]*domain
	socks   map[string]uint16 // xenstored socket path -> domid
	conns   map[*conn]struct{}
	connSeq int
	closed  bool

	// bellMu serialises binding and unbinding, so that a binding to a
	// port finds its bells; bells holds every bound port's.
	bellMu sync.Mutex
	bells  map[portKey]*dport

	wg        sync.WaitGroup // accept loop and connection goroutines
	xsWG      sync.WaitGroup // xenstore Serve goroutines
	closeOnce sync.Once
}

// domain is the state of one live simulated domain; its grants are in
// Daemon.grants.
type domain struct {
	id    uint16
	conns int // live control connections
	ln    *net.UnixListener
	sock  string
}

// Start takes the directory (failing with an error wrapping
// ErrAlreadyRunning if another daemon holds it), replaces stale sockets,
// and serves the control socket and dom0's xenstored socket until Close.
func Start(cfg Config) (*Daemon, error) {
	dir := cfg.Dir
	if dir == "" {
		dir = simproto.DefaultDir()
	}
	dir = filepath.Clean(dir)
	if n := len(simproto.XenstorePath(dir, simproto.FirstReservedDomID)); n > len(unix.RawSockaddrUnix{}.Path)-1 {
		return nil, fmt.Errorf("vchan-simd: directory %s is too long for unix socket paths (%d bytes; use a shorter -dir)", dir, n)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vchan-simd: %w", err)
	}
	lock, err := takeLock(dir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		dir:    dir,
		logf:   cfg.Logf,
		lock:   lock,
		store:  xssim.NewStore(xssim.DefaultLimits()),
		events: evtsim.NewSwitch(),
		doms:   make(map[uint16]*domain),
		socks:  make(map[string]uint16),
		conns:  make(map[*conn]struct{}),
		bells:  make(map[portKey]*dport),
	}
	d.grants = gntsim.NewTable(d.events, cfg.GrantLimit) // <= 0: DefaultGrantLimit
	if d.logf == nil {
		d.logf = func(string, ...any) {}
	}
	d.xs = xsserver.New(d.store, d.domidOf)
	fail := func(err error) (*Daemon, error) {
		d.shutdown()
		return nil, err
	}
	// The lock is ours, so any socket left here is stale: a daemon died.
	removeStale(dir)
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fail(fmt.Errorf("vchan-simd: %w", err))
	}
	// bind creates the socket's file before listen makes it take
	// connections, and a connect in between is refused as if the daemon had
	// died. So the socket is bound under a temporary name and renamed into
	// place once it listens: whoever sees the control socket can join.
	ctlPath := simproto.ControlPath(dir)
	tmp := ctlPath + ".new"
	os.Remove(tmp)
	d.ctl, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmp, Net: "unixpacket"})
	if err != nil {
		return fail(fmt.Errorf("vchan-simd: %w", err))
	}
	d.ctl.SetUnlinkOnClose(false) // shutdown removes ctlPath
	if err := os.Rename(tmp, ctlPath); err != nil {
		os.Remove(tmp)
		return fail(fmt.Errorf("vchan-simd: %w", err))
	}
	// dom0 exists from the start and lives as long as the daemon: its
	// extra reference is never dropped.
	if err := d.join(0); err != nil {
		return fail(err)
	}
	d.wg.Add(1)
	go d.accept()
	return d, nil
}

// takeLock flocks DIR/lock, or explains who holds it.
func takeLock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vchan-simd: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err == nil {
		return f, nil
	}
	f.Close()
	if err == unix.EWOULDBLOCK {
		pid := "unknown"
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			pid = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%w in %s (pid %s)", ErrAlreadyRunning, dir, pid)
	}
	return nil, fmt.Errorf("vchan-simd: lock %s: %w", f.Name(), err)
}

// removeStale removes the sockets a crashed daemon left behind.
func removeStale(dir string) {
	os.Remove(simproto.ControlPath(dir))
	socks, _ := filepath.Glob(filepath.Join(dir, "dom*", "xenstored"))
	for _, s := range socks {
		os.Remove(s)
		os.Remove(filepath.Dir(s))
	}
}

// Dir returns the daemon's directory.
func (d *Daemon) Dir() string { return d.dir }

// Close stops the daemon: it closes every connection (firing their unmap
// notifications), removes the sockets and the pid file, releases the lock
// and waits for all its goroutines.
func (d *Daemon) Close() error {
	d.closeOnce.Do(d.shutdown)
	return nil
}

func (d *Daemon) shutdown() {
	d.mu.Lock()
	d.closed = true
	conns := make([]*conn, 0, len(d.conns))
	for c := range d.conns {
		conns = append(conns, c)
	}
	d.mu.Unlock()
	if d.ctl != nil {
		d.ctl.Close()
		os.Remove(simproto.ControlPath(d.dir))
	}
	for _, c := range conns {
		c.abort()
	}
	d.wg.Wait()  // accept loop and connections: no more joins
	d.xs.Close() // closes (and unlinks) the xenstored sockets
	d.xsWG.Wait()
	d.mu.Lock()
	for _, dom := range d.doms {
		os.Remove(filepath.Dir(dom.sock))
	}
	d.mu.Unlock()
	os.Remove(filepath.Join(d.dir, "pid"))
	// The lock file stays: removing it would let two daemons lock two
	// different files. Closing it releases the lock.
	d.lock.Close()
}

// accept serves the control socket.
func (d *Daemon) accept() {
	defer d.wg.Done()
	for {
		uc, err := d.ctl.AcceptUnix()
		if err != nil {
			return // closed by shutdown; anything else is fatal for the socket too
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			uc.Close()
			return
		}
		d.connSeq++
		c := &conn{d: d, id: d.connSeq, uc: uc, regions: make(map[uint32]gnt.Region), ports: make(map[uint32]*dport)}
		d.conns[c] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go c.serve()
	}
}

// domidOf tells xsserver which domain a xenstored connection is: the one
// whose socket it came in on.
func (d *Daemon) domidOf(uc *net.UnixConn) (uint16, error) {
	addr, ok := uc.LocalAddr().(*net.UnixAddr)
	if !ok {
		return 0, errors.New("vchan-simd: xenstored connection without a local address")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.socks[addr.Name]
	if !ok {
		return 0, fmt.Errorf("vchan-simd: xenstored connection on unknown socket %s", addr.Name)
	}
	return id, nil
}

// join adds a control connection to domain id, creating the domain (its
// xenstore home and xenstored socket) if it is new.
func (d *Daemon) join(id uint16) error {
	d.life.Lock()
	defer d.life.Unlock()
	d.mu.Lock()
	if dom := d.doms[id]; dom != nil {
		dom.conns++
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()

	if err := d.store.IntroduceDomain(id); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("vchan-simd: introduce domain %d: %w", id, err)
	}
	sock := simproto.XenstorePath(d.dir, id)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return fmt.Errorf("vchan-simd: domain %d: %w", id, err)
	}
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("vchan-simd: domain %d: %w", id, err)
	}
	d.mu.Lock()
	d.doms[id] = &domain{id: id, conns: 1, ln: ln, sock: sock}
	d.socks[sock] = id
	d.mu.Unlock()
	d.xsWG.Add(1)
	go func() {
		defer d.xsWG.Done()
		_ = d.xs.Serve(ln)
	}()
	d.logf("domain %d introduced (xenstored socket %s)", id, sock)
	return nil
}

// leave drops a control connection of domain id; the last one of a domain
// other than dom0 releases it: its grant tables (empty by now: each
// connection closed its regions) and event channels go, its xenstore home
// is removed and @releaseDomain fires, and its socket is removed.
func (d *Daemon) leave(id uint16) {
	d.life.Lock()
	defer d.life.Unlock()
	d.mu.Lock()
	dom := d.doms[id]
	dom.conns--
	if dom.conns > 0 {
		d.mu.Unlock()
		return
	}
	delete(d.doms, id)
	delete(d.socks, dom.sock)
	d.mu.Unlock()

	dom.ln.Close() // unlinks the socket; Serve returns
	os.Remove(filepath.Dir(dom.sock))
	d.grants.CloseDomain(id) // a later domain id starts afresh
	d.events.CloseDomain(id)
	_ = d.store.ReleaseDomain(id)
	d.logf("domain %d released", id)
}

// Resources returns what domain domid holds now.
func (d *Daemon) Resources(domid uint16) Resources {
	return Resources{
		Granted: d.grants.Granted(domid),
		Mapped:  d.grants.Mapped(domid),
		Ports:   d.events.Ports(domid),
	}
}
