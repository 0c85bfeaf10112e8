package vchan

import (
	"fmt"
	"sync"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/gnt/gntsim"
	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xssim"
)

// Simulator is a simulated Xen host inside one process: domains with IDs,
// grant tables whose pages are real shared memory that only the granted
// domain may map (read-only maps are protected on Linux), event channels with Xen's
// binding rules and pending-bit semantics, and a xenstore with permissions,
// transactions, watches and C xenstored's quotas. The vchan code on top is
// the same as on Xen.
//
// Use it to test programs without Xen, the way net.Pipe stands in for a
// network:
//
//	sim := vchan.NewSimulator()
//	ln, _ := vchan.Listen(1, "5000", &vchan.Config{Host: sim.Domain(0)})
//	c, _ := vchan.Dial(0, "5000", &vchan.Config{Host: sim.Domain(1)})
type Simulator struct {
	store  *xssim.Store
	events *evtsim.Switch
	grants *gntsim.Table

	mu    sync.Mutex
	hosts map[uint16]*Host
}

// SimulatorConfig holds the simulator's limits. Zero values mean the
// defaults of Linux and C xenstored.
type SimulatorConfig struct {
	// GrantLimit is how many pages one domain may have granted at once,
	// like gntalloc's "limit" module parameter (default 1024). A server
	// holds 1 + 2 × 2^(order-12) pages per ring pair, and a Listener keeps
	// one spare pair published.
	GrantLimit int
}

// NewSimulator returns a simulated host with default limits. Domain 0 exists
// and is privileged, as on Xen.
func NewSimulator() *Simulator { return NewSimulatorConfig(SimulatorConfig{}) }

// NewSimulatorConfig returns a simulated host with the given limits.
func NewSimulatorConfig(cfg SimulatorConfig) *Simulator {
	events := evtsim.NewSwitch()
	s := &Simulator{
		store:  xssim.NewStore(xssim.DefaultLimits()),
		events: events,
		grants: gntsim.NewTable(events, cfg.GrantLimit),
		hosts:  make(map[uint16]*Host),
	}
	return s
}

// Domain returns the Host of simulated domain domid, creating the domain
// (and its xenstore home /local/domain/<domid>) on first use.
func (s *Simulator) Domain(domid uint16) *Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.hosts[domid]; ok {
		return h
	}
	// EEXIST only if the domain was introduced before, which the map rules out.
	_ = s.store.IntroduceDomain(domid)
	h := &Host{
		name:       fmt.Sprintf("simulated dom%d", domid),
		openXS:     func() (xenstore.Client, error) { return s.store.Connect(domid), nil },
		openSharer: func() (gnt.Sharer, error) { return s.grants.Sharer(domid), nil },
		openMapper: func() (gnt.Mapper, error) { return s.grants.Mapper(domid), nil },
		openEvtchn: func() (evtchn.Device, error) { return s.events.Open(domid), nil },
		// A wake-up here is a goroutine hand-off, and spinning only
		// competes for the CPU (measured: half the throughput).
		noSpin: true,
	}
	s.hosts[domid] = h
	return h
}

// Destroy simulates Xen destroying domain domid (xl destroy): its grants are
// revoked, its event channels closed, and its xenstore home removed, firing
// @releaseDomain. As on Xen, no unmap notification fires (no kernel of the
// dead domain runs to send one); connections of other domains with it learn
// of it from @releaseDomain and fail with an error wrapping
// syscall.ECONNRESET once they have read what it wrote.
func (s *Simulator) Destroy(domid uint16) {
	s.mu.Lock()
	delete(s.hosts, domid)
	s.mu.Unlock()
	s.grants.DestroyDomain(domid)
	s.events.CloseDomain(domid)
	_ = s.store.ReleaseDomain(domid)
}

// Resources counts what a simulated domain holds: for leak checks.
type Resources struct {
	Granted int // pages it has granted
	Mapped  int // pages of others it has mapped
	Ports   int // event channel ports bound
}

// Resources returns what domain domid holds now.
func (s *Simulator) Resources(domid uint16) Resources {
	return Resources{
		Granted: s.grants.Granted(domid),
		Mapped:  s.grants.Mapped(domid),
		Ports:   s.events.Ports(domid),
	}
}

// XenstoreNodes returns the number of nodes in the simulated xenstore.
func (s *Simulator) XenstoreNodes() int { return s.store.Len() }

// XenstoreDump calls fn for every xenstore node, depth first, like
// xenstore-ls: its path, value and permissions (e.g. "n0 r1").
func (s *Simulator) XenstoreDump(fn func(path string, value []byte, perms string)) {
	s.store.Walk(func(path string, value []byte, perms []xenstore.Perm) {
		var ps string
		for i, p := range perms {
			if i > 0 {
				ps += " "
			}
			ps += p.String()
		}
		fn(path, value, ps)
	})
}
