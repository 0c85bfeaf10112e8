package vchan

import (
	"context"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// MaxDomainID is the highest domain ID a vchan peer can have: Xen reserves
// the IDs from DOMID_FIRST_RESERVED (0x7FF0: DOMID_SELF, DOMID_IO, ...) up
// for special meanings, none of which is a domain that runs a peer.
const MaxDomainID = 0x7FEF

// checkDomain refuses a reserved or impossible peer domain ID.
func checkDomain(role string, id uint16) error {
	if id > MaxDomainID {
		return fmt.Errorf("%s domain %d (%#x) is reserved by Xen, not a domain (peers are 0..%d)", role, id, id, MaxDomainID)
	}
	return nil
}

// ParseAddr parses an address as Dialer and ListenConfig take it, and as
// Addr.String prints it: "<domid>:<port or absolute xenstore path>", where
// the domain ID may be written "dom<domid>". For a Dialer the domain is
// the server's; for a ListenConfig, the client's. A port is kept as given in
// Path (it names a directory only once the other domain is known); use
// Listen, Dial or PortPath to resolve it.
func ParseAddr(s string) (*Addr, error) {
	dom, rest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("vchan address %q: want <domid>:<port or /path>", truncateString(s))
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("vchan address %q: not valid UTF-8", truncateString(s))
	}
	digits := strings.TrimPrefix(dom, "dom")
	n, err := parseDecimal([]byte(digits), MaxDomainID)
	if err != nil {
		return nil, fmt.Errorf("vchan address %q: domain %q is not a decimal domain ID 0..%d", truncateString(s), truncateString(dom), MaxDomainID)
	}
	if err := checkPortOrPath(rest); err != nil {
		return nil, fmt.Errorf("vchan address %q: %w", truncateString(s), err)
	}
	return &Addr{Domain: uint16(n), Path: rest}, nil
}

// checkPortOrPath validates a port or an absolute path without resolving
// it: the same rules as resolvePath.
func checkPortOrPath(p string) error {
	if isPort(p) {
		return nil
	}
	_, err := resolvePath(p, 0, 0)
	return err
}

func truncateString(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// splitNetworkAddress checks the network name and parses the address.
func splitNetworkAddress(network, address string) (*Addr, error) {
	if network != Network {
		return nil, fmt.Errorf("unknown network %q (want %q)", network, Network)
	}
	return ParseAddr(address)
}

// A Dialer connects to vchan servers, with the signature that net/http's
// Transport.DialContext, golang.org/x/net/proxy and gRPC's
// WithContextDialer expect:
//
//	d := &vchan.Dialer{}
//	tr := &http.Transport{DialContext: d.DialContext}
//	// http://anything/ now reaches the server named by the address given
//	// to DialContext, e.g. with a custom resolver mapping hosts to "0:web".
//
// The zero Dialer uses the default host and refuses at once when no server
// is listening (see Config.WaitForServer).
type Dialer struct {
	// Config holds the host and the other settings; nil means the
	// defaults.
	Config *Config
}

// DialContext connects to address on network "vchan". The address is
// "<server domid>:<port or absolute path>" (see ParseAddr). Without a
// deadline in ctx it waits at most DefaultDialTimeout for a server that is
// between two Accepts.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.DialVchan(ctx, network, address)
	if err != nil {
		return nil, err // a nil *Conn must not become a non-nil net.Conn
	}
	return c, nil
}

// Dial connects to address on network "vchan", waiting at most
// DefaultDialTimeout.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialVchan is DialContext returning a *Conn.
func (d *Dialer) DialVchan(ctx context.Context, network, address string) (*Conn, error) {
	a, err := splitNetworkAddress(network, address)
	if err != nil {
		return nil, opError("dial", nil, nil, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}
	return DialContext(ctx, a.Domain, a.Path, d.Config)
}

// ListenConfig creates vchan Listeners, mirroring net.ListenConfig.
type ListenConfig struct {
	// Config holds the host and buffer settings; nil means the defaults.
	Config *Config
}

// Listen announces on network "vchan" for the client domain and port or
// path in address, "<client domid>:<port or absolute path>" (see
// ParseAddr). The context is not used after Listen returns.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	ln, err := lc.ListenVchan(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// ListenVchan is Listen returning a *Listener.
func (lc *ListenConfig) ListenVchan(ctx context.Context, network, address string) (*Listener, error) {
	a, err := splitNetworkAddress(network, address)
	if err != nil {
		return nil, opError("listen", nil, nil, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, opError("listen", nil, nil, err)
	}
	return Listen(a.Domain, a.Path, lc.Config)
}

var (
	_ net.Conn     = (*Conn)(nil)
	_ net.Listener = (*Listener)(nil)
	_ net.Addr     = (*Addr)(nil)
	_ net.Error    = (*temporaryError)(nil)
)

// temporaryError marks a shortage that clears by itself, such as the grant
// limit while other connections hold grants: net.OpError.Temporary asks
// its Err directly, so the mark must sit right under the OpError for
// http.Server and grpc.Server to back off and go on.
type temporaryError struct{ err error }

func (e *temporaryError) Error() string   { return e.err.Error() }
func (e *temporaryError) Unwrap() error   { return e.err }
func (e *temporaryError) Temporary() bool { return true }
func (e *temporaryError) Timeout() bool   { return false }
