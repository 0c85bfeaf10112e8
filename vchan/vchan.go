// Package vchan provides net.Conn and net.Listener over Xen vchan: an
// inter-domain byte stream through shared memory pages (grant tables) and an
// event channel, wire-compatible with Xen's C library libxenvchan.
//
// A server domain calls Listen with the client's domain ID; it allocates the
// rings, shares them with that domain only, and publishes them in xenstore.
// The client calls Dial with the server's domain ID and the same port or
// path:
//
//	// In domain 0:
//	ln, err := vchan.Listen(5, "5000", nil) // for domain 5, port 5000
//	conn, err := ln.Accept()
//
//	// In domain 5:
//	conn, err := vchan.Dial(0, "5000", nil)
//
// Code written for the net package plugs in through Dialer and
// ListenConfig, whose addresses are "<domid>:<port or path>" (ParseAddr):
// a Dialer's DialContext fits net/http's Transport.DialContext and gRPC's
// WithContextDialer.
//
// A port names the conventional xenstore directory
// /local/domain/<server>/data/vchan/<client>/<port>; an absolute xenstore
// path may be given instead. Errors are *net.OpError values with Net
// "vchan"; errors.Is finds the cause a socket user checks: ECONNREFUSED
// (nobody listens), EADDRINUSE, EPIPE (the peer closed), ECONNRESET (the
// peer's domain is gone), net.ErrClosed, os.ErrDeadlineExceeded.
//
// Without Xen, a Simulator provides domains inside one process, the way
// net.Pipe stands in for a network: pass Config{Host: sim.Domain(n)}.
package vchan

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/vchan-go/vchan/internal/ring"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// Network is the network name of vchan addresses, as returned by
// Addr.Network.
const Network = "vchan"

// MaxRingSize is the largest ring a vchan supports: 1 MiB each way.
const MaxRingSize = 1 << ring.MaxOrder

// MaxPathLen is the longest xenstore base path accepted. libxenvchan builds
// "<path>/event-channel" in a 64-byte buffer and silently truncates longer
// paths (docs/PROTOCOL.md §9), so a longer path would work between Go peers and
// fail, confusingly, with a C peer. It is refused instead.
const MaxPathLen = 49

// ErrProtocol is wrapped by errors that report a peer breaking the vchan
// protocol: corrupt ring indices, impossible ring orders, a grant list that
// does not fit, invalid xenstore values. The connection is unusable after it.
var ErrProtocol = ring.ErrProtocol

// Addr is the address of one end of a vchan: a domain and the xenstore
// directory where the server published the rings.
type Addr struct {
	Domain uint16 // the domain ID of this end
	Path   string // the xenstore base path of the vchan
}

// Network returns "vchan".
func (a *Addr) Network() string { return Network }

// String returns the address as "dom<ID>:<path>".
func (a *Addr) String() string {
	if a == nil {
		return "<nil>"
	}
	return "dom" + strconv.Itoa(int(a.Domain)) + ":" + a.Path
}

// Config holds optional settings. A nil *Config means the defaults.
type Config struct {
	// Host is the Xen host to use: the real one (XenHost) or a simulated
	// domain (Simulator.Domain). Nil means DefaultHost().
	Host *Host

	// ReadBufferSize and WriteBufferSize are a server's minimum ring sizes
	// in bytes, each 0..MaxRingSize: the ring it reads from (which the
	// client writes) and the ring it writes to. 0 means DefaultRingSize.
	// Other sizes are rounded up the way libxenvchan_server_init rounds
	// them, so a C server given the same sizes shares the same layout:
	// sizes up to 1 KiB/2 KiB share the page with the header (1 and 1 give
	// libxenvchan's smallest rings, what it gives for 0 and 0); larger ones
	// get their own pages, a power of two of at least 4 KiB. A client
	// ignores them: the server decides.
	ReadBufferSize, WriteBufferSize int

	// WaitForServer makes Dial wait, until its context is done, for a
	// server that is not listening yet (a service that starts after its
	// client, at boot), instead of failing at once with an error wrapping
	// syscall.ECONNREFUSED. A server that is listening but between two
	// Accepts is always waited for.
	WaitForServer bool
}

func (c *Config) host() (*Host, error) {
	if c != nil && c.Host != nil {
		if c.Host.openXS == nil {
			return nil, errors.New("Config.Host is a zero Host, which has no devices: use vchan.XenHost(), vchan.SimHost or a Simulator's Domain")
		}
		return c.Host, nil
	}
	return DefaultHost()
}

func (c *Config) waitForServer() bool { return c != nil && c.WaitForServer }

// DefaultRingSize is the size of each ring when Config leaves it 0: 64 KiB
// both ways. Measured between two processes with random read and write
// sizes up to 64 KiB (docs/PERFORMANCE.md, bench/ringsizes), libxenvchan's
// in-page 1 KiB/2 KiB rings moved 0.17 of a unix socket pair's bytes per
// second at 4× its CPU per byte; 64 KiB rings moved 0.75 (1 MiB rings 0.90).
// A 64 KiB pair costs 33 granted pages, so Linux's default gntalloc limit
// of 1024 pages holds 31 ring pairs: 30 connections and a Listener's
// spare ring.
const DefaultRingSize = 64 << 10

func (c *Config) layout() (ring.Layout, error) {
	r, w := DefaultRingSize, DefaultRingSize
	if c != nil && c.ReadBufferSize != 0 {
		r = c.ReadBufferSize
	}
	if c != nil && c.WriteBufferSize != 0 {
		w = c.WriteBufferSize
	}
	return ring.ServerLayout(r, w)
}

// PortPath returns the conventional xenstore base path of a vchan port
// between a server and a client domain: /local/domain/<server>/data/vchan/<client>/<port>.
func PortPath(server, client uint16, port string) string {
	return fmt.Sprintf("%s/data/vchan/%d/%s", xenstore.DomainPath(server), client, port)
}

// resolveEnds does what Listen and Dial both do first: check the peer's
// domain ID, find the host and this domain's ID, and resolve the path,
// whose port form names the server's directory for the client.
func resolveEnds(cfg *Config, listening bool, peer uint16, portOrPath string) (h *Host, own uint16, path string, err error) {
	role := map[bool]string{true: "client", false: "server"}[listening]
	if err := checkDomain(role, peer); err != nil {
		return nil, 0, "", err
	}
	if h, err = cfg.host(); err != nil {
		return nil, 0, "", err
	}
	if own, err = h.DomainID(); err != nil {
		return nil, 0, "", err
	}
	server, client := peer, own
	if listening {
		server, client = own, peer
	}
	if path, err = resolvePath(portOrPath, server, client); err != nil {
		return nil, 0, "", err
	}
	return h, own, path, nil
}

// resolvePath turns a Listen/Dial argument into an absolute base path: a
// port ([A-Za-z0-9_-]+, as ocaml-vchan and Qubes use) or an absolute path.
func resolvePath(portOrPath string, server, client uint16) (string, error) {
	p := portOrPath
	switch {
	case p == "":
		return "", errors.New("empty port or path")
	case isPort(p):
		p = PortPath(server, client, p)
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("%q is neither a port ([A-Za-z0-9_-]+) nor an absolute xenstore path", portOrPath)
	}
	if len(p) > MaxPathLen {
		return "", fmt.Errorf("xenstore path %q is %d characters long; libxenvchan peers truncate paths over %d (use a shorter port or path)", p, len(p), MaxPathLen)
	}
	if err := checkPath(p); err != nil {
		return "", err
	}
	return p, nil
}

func isPort(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return s != ""
}

// checkPath applies xenstore's path rules (docs/PROTOCOL.md §13.3); the root
// names no vchan.
func checkPath(p string) error {
	if p == "/" || !xenstore.ValidPath(p) {
		return fmt.Errorf("invalid xenstore path %q", p)
	}
	return nil
}

// opError wraps err the way the net package does: a *net.OpError with Net
// "vchan" at the top, whatever the cause (an OpError of another network,
// say a unix socket to the simulator daemon, is wrapped, not passed on).
// io.EOF stays bare (nettest and io.Copy compare it with ==). A nil *Addr
// becomes a nil net.Addr, never a typed nil.
func opError(op string, source, addr *Addr, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if oe, ok := err.(*net.OpError); ok && oe.Net == Network {
		return err
	}
	e := &net.OpError{Op: op, Net: Network, Err: err}
	if source != nil {
		e.Source = source
	}
	if addr != nil {
		e.Addr = addr
	}
	return e
}

// errPeerClosed is what a write to a closed peer fails with: EPIPE, as a
// write on a socket whose peer is gone.
var errPeerClosed = syscall.EPIPE
