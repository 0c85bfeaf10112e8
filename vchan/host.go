package vchan

import (
	"fmt"
	"sync"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/hostenv"
	"github.com/vchan-go/vchan/internal/simd/simclient"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// HostEnv is the environment variable that chooses DefaultHost: "xen" (or
// unset) for the real Xen devices, "sim:<domid>" for the cross-process
// simulator (or "sim" with the domain in VCHAN_SIM_DOMID).
const HostEnv = hostenv.Var

// Host is the Xen host a vchan runs on: grant tables, event channels and
// xenstore, as seen from one domain. XenHost is the real one; a Simulator
// hands out simulated ones. Devices are opened on first use and shared by
// every Listener and Conn of the Host.
type Host struct {
	name string

	openXS     func() (xenstore.Client, error)
	openSharer func() (gnt.Sharer, error)
	openMapper func() (gnt.Mapper, error)
	openEvtchn func() (evtchn.Device, error)

	xs     lazy[xenstore.Client]
	sharer lazy[gnt.Sharer]
	mapper lazy[gnt.Mapper]
	evt    lazy[evtchn.Device]
	domid  lazy[uint16]

	closer func() error // releases what the host holds; nil: nothing

	peers peerWatch // @releaseDomain watch for this host's connections

	// freed is closed (and replaced) when a connection of this host
	// closes and so returns its grants: a Listener short of grants
	// retries then.
	freedMu sync.Mutex
	freed   chan struct{}

	// noSpin: connections do not spin by default (see SetSpinWait),
	// because waking the peer costs no more than spinning would.
	noSpin bool
}

// released signals that a connection of this host has closed.
func (h *Host) released() {
	h.freedMu.Lock()
	defer h.freedMu.Unlock()
	if h.freed != nil {
		close(h.freed)
		h.freed = nil
	}
}

// freedSignal returns a channel closed at the next released.
func (h *Host) freedSignal() <-chan struct{} {
	h.freedMu.Lock()
	defer h.freedMu.Unlock()
	if h.freed == nil {
		h.freed = make(chan struct{})
	}
	return h.freed
}

// spinWait is the default spin wait of this host's connections.
func (h *Host) spinWait() time.Duration {
	if h == nil || h.noSpin {
		return 0
	}
	return DefaultSpinWait
}

// lazy opens a device once and remembers the result, error included.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (l *lazy[T]) get(open func() (T, error)) (T, error) {
	l.once.Do(func() { l.v, l.err = open() })
	return l.v, l.err
}

// String names the host, e.g. "xen" or "simulated dom3".
func (h *Host) String() string { return h.name }

func (h *Host) xenstore() (xenstore.Client, error) { return h.xs.get(h.openXS) }
func (h *Host) gntSharer() (gnt.Sharer, error)     { return h.sharer.get(h.openSharer) }
func (h *Host) gntMapper() (gnt.Mapper, error)     { return h.mapper.get(h.openMapper) }
func (h *Host) evtchn() (evtchn.Device, error)     { return h.evt.get(h.openEvtchn) }

// DomainID returns the ID of the domain this host runs in, as xenstore
// reports it (the relative key "domid").
func (h *Host) DomainID() (uint16, error) {
	return h.domid.get(func() (uint16, error) {
		xs, err := h.xenstore()
		if err != nil {
			return 0, err
		}
		v, err := xs.Read("domid")
		if err != nil {
			return 0, fmt.Errorf("reading own domain ID: %w", err)
		}
		id, err := parseDomID(v)
		if err != nil {
			return 0, fmt.Errorf("xenstore key domid: %w", err)
		}
		return id, nil
	})
}

// parseDomID parses a decimal domain ID from xenstore, strictly.
func parseDomID(v []byte) (uint16, error) {
	n, err := parseDecimal(v, 0xffff)
	return uint16(n), err
}

// parseDecimal parses untrusted xenstore bytes as a decimal number in
// 0..max: digits only, no sign, no spaces, at most 10 digits.
func parseDecimal(v []byte, max uint64) (uint64, error) {
	if len(v) == 0 || len(v) > 10 {
		return 0, fmt.Errorf("%w: %q is not a decimal number", ErrProtocol, truncate(v))
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not a decimal number", ErrProtocol, truncate(v))
		}
		n = n*10 + uint64(c-'0')
	}
	if n > max {
		return 0, fmt.Errorf("%w: %d is out of range (max %d)", ErrProtocol, n, max)
	}
	return n, nil
}

func truncate(v []byte) string {
	if len(v) > 32 {
		return string(v[:32]) + "..."
	}
	return string(v)
}

var (
	xenHostOnce sync.Once
	xenHost     *Host
)

// XenHost returns the real Xen host: /dev/xen/gntalloc, /dev/xen/gntdev,
// /dev/xen/evtchn and xenstored (its socket, or /dev/xen/xenbus). Outside
// Xen, Listen and Dial on it fail with an error that says what is missing.
func XenHost() *Host {
	xenHostOnce.Do(func() { xenHost = newXenHost() })
	return xenHost
}

// DefaultHost returns the host chosen by the VCHAN_HOST environment
// variable:
//
//	unset or "xen"  XenHost, the real Xen devices
//	"sim:<domid>"   the cross-process simulator (vchan-simd) as domain
//	                <domid>, in the directory $VCHAN_SIM_DIR or the default
//	                (see SimHost)
//	"sim"           the same, with the domain in $VCHAN_SIM_DOMID
func DefaultHost() (*Host, error) {
	spec, err := hostenv.Parse()
	if err != nil {
		return nil, err
	}
	if spec.Kind != "sim" {
		return XenHost(), nil
	}
	if spec.Domain < 0 {
		return nil, fmt.Errorf("%s=sim: say which domain this process is: %s=sim:<domid>, or %s=<domid>", HostEnv, HostEnv, hostenv.SimDomIDVar)
	}
	id := uint16(spec.Domain)
	simHostMu.Lock()
	defer simHostMu.Unlock()
	if h := simHosts[id]; h != nil {
		return h, nil
	}
	h, err := SimHost("", id)
	if err != nil {
		return nil, err
	}
	simHosts[id] = h
	return h, nil
}

var (
	simHostMu sync.Mutex
	simHosts  = map[uint16]*Host{}
)

// SimHost joins the cross-process simulated Xen host that the vchan-simd
// daemon serves in dir, as domain domid. An empty dir means $VCHAN_SIM_DIR,
// else $XDG_RUNTIME_DIR/vchan-sim, else /tmp/vchan-sim-<uid>. Several
// processes may act as the same domain. Close the Host when done; the daemon
// cleans up after a process that exits without closing, as the kernel does.
func SimHost(dir string, domid uint16) (*Host, error) {
	d, err := simclient.Connect(dir, domid)
	if err != nil {
		return nil, err
	}
	return &Host{
		name:       fmt.Sprintf("simulated dom%d (%s)", domid, d.Dir()),
		openXS:     d.Xenstore,
		openSharer: func() (gnt.Sharer, error) { return d.Sharer(), nil },
		openMapper: func() (gnt.Mapper, error) { return d.Mapper(), nil },
		openEvtchn: func() (evtchn.Device, error) { return d.Evtchn(), nil },
		closer:     d.Close,
	}, nil
}

// Close releases a host joined with SimHost. Connections made through it
// fail afterwards. For other hosts it does nothing.
func (h *Host) Close() error {
	if h.closer == nil {
		return nil
	}
	return h.closer()
}
