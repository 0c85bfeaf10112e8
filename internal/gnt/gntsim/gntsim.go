// Package gntsim simulates the grant tables of a Xen host inside one
// process, so that vchan endpoints of several "domains" can share memory in
// tests without Xen.
//
// A Table is the host's set of grant tables. Table.Sharer gives a domain the
// equivalent of /dev/xen/gntalloc and Table.Mapper the equivalent of
// /dev/xen/gntdev (docs/PROTOCOL.md §10, §11).
//
// The pages are real shared memory: each Share creates a memfd and maps it
// MAP_SHARED, and each grant reference names a page of that memfd. Map
// reserves a contiguous address range and maps the referenced pages over it
// from their memfds, read-only when asked, so the kernel enforces the
// protection exactly as a read-only grant mapping does. Because nothing but
// file descriptors and offsets names the memory, the same design works
// across processes: the vchan-simd daemon (internal/simd/simdaemon) keeps
// its grant tables in a Table and passes the memfds behind each region
// (Files) to the process that maps them.
//
// Off Linux there is no memfd: a Share's pages are ordinary memory, and Map
// returns that memory itself. It then accepts only consecutive pages of one
// Share, in order (as a vchan maps its rings), and does not protect
// read-only maps against writes (pages_other.go).
//
// Lifetimes follow Linux: closing a SharedRegion revokes its references for
// new maps and returns them to the domain's grant budget, but mappings the
// peer already has stay valid and keep the memory alive until the peer
// unmaps them. Unmap notifications (gnt.UnmapNotify) fire on Close, or for
// every region of a domain on CloseDomain, which models the process dying.
package gntsim

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/gnt"
)

// DefaultLimit is the number of pages a domain may have granted at once when
// NewTable is given no limit. It is the default of the Linux gntalloc module
// parameter `limit` (docs/PROTOCOL.md §10).
const DefaultLimit = 1024

// MaxMapPages bounds the number of references one Map call accepts; more
// fail with EINVAL, as past the per-request `limit` of recent gntdev
// (docs/PROTOCOL.md §11). A vchan maps at most 256 pages at once (a ring of
// order 20) and 513 in all (its shared page and two such rings). The bound
// is the same in process and across processes: vchan-simd's map reply of
// this many pages fits in one message of its control protocol.
const MaxMapPages = 4096

// MaxMapShares bounds the number of Shares whose pages one Map call may
// name; more fail with EINVAL. It is SCM_MAX_FD, the most descriptors the
// kernel passes in one message: vchan-simd passes a map's memfds (see Files)
// in one reply. A vchan maps each ring from one Share.
const MaxMapShares = 253

// FirstRef is the first grant reference handed out by each domain. Xen
// reserves the first few entries of a grant table (GNTTAB_NR_RESERVED_ENTRIES
// is 8) for the toolstack, so real references never start at 0; starting
// higher also catches code that mistakes a zero value for a reference.
const FirstRef gnt.Ref = 8

// Table holds the grant tables of all simulated domains. The zero value is
// not usable; use NewTable. A Table is safe for concurrent use.
type Table struct {
	events *evtsim.Switch
	limit  int

	// mu guards everything below and the mutable state of every domain,
	// handle and region. It is also held across the mmap/munmap system calls
	// of Share, Map and Close, so that a memfd can never be closed while a
	// Map is mapping from it.
	mu   sync.Mutex
	doms map[uint16]*domain
	seq  uint64 // creation counter for regions, to close them in order
}

// domain is the grant state of one simulated domain. CloseDomain drops it
// from the Table and marks it dead, so handles still pointing at it fail
// instead of acting on a later domain that reuses the domid.
type domain struct {
	id      uint16
	dead    bool
	nextRef gnt.Ref
	grants  map[gnt.Ref]*grant
	granted int // pages currently granted
	mapped  int // pages currently mapped
	regions map[*region]struct{}
}

// grant is one granted page: page index page of the Share's pages src,
// which only domain peer may map.
type grant struct {
	src  *pages
	page int64
	peer uint16
}

// NewTable returns empty grant tables. Unmap notifications that send an event
// go through events, which may be nil if no notification ever asks for one.
// limit is the number of pages each domain may have granted at once, like
// gntalloc's `limit` module parameter; limit <= 0 means DefaultLimit.
func NewTable(events *evtsim.Switch, limit int) *Table {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Table{events: events, limit: limit, doms: make(map[uint16]*domain)}
}

// domainLocked returns domain domid's state, creating it if needed. t.mu must
// be held.
func (t *Table) domainLocked(domid uint16) *domain {
	d := t.doms[domid]
	if d == nil {
		d = &domain{
			id:      domid,
			nextRef: FirstRef,
			grants:  make(map[gnt.Ref]*grant),
			regions: make(map[*region]struct{}),
		}
		t.doms[domid] = d
	}
	return d
}

// Sharer returns a handle through which domain domid grants pages, like
// opening /dev/xen/gntalloc inside that domain.
func (t *Table) Sharer(domid uint16) gnt.Sharer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &sharer{handle{t: t, dom: t.domainLocked(domid), kind: "gntalloc"}}
}

// Mapper returns a handle through which domain domid maps pages granted to
// it, like opening /dev/xen/gntdev inside that domain.
func (t *Table) Mapper(domid uint16) gnt.Mapper {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &mapper{handle{t: t, dom: t.domainLocked(domid), kind: "gntdev"}}
}

// Granted returns the number of pages domain domid currently has granted.
// Tests use it to check for leaks.
func (t *Table) Granted(domid uint16) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.doms[domid]; d != nil {
		return d.granted
	}
	return 0
}

// Mapped returns the number of granted pages domain domid currently has
// mapped. Tests use it to check for leaks.
func (t *Table) Mapped(domid uint16) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.doms[domid]; d != nil {
		return d.mapped
	}
	return 0
}

// CloseDomain simulates the death of domain domid (or of the one process that
// holds its grants): every region it shared or mapped is closed as if by
// Close, in creation order, so the unmap notifications fire and its grants
// are revoked. Mappings other domains hold of its pages stay valid, as they
// do in Linux. Sharer and Mapper handles of the dead domain fail from then
// on; a later Sharer or Mapper with the same domid gets a fresh domain.
//
// Call it before the event switch's CloseDomain for the same domain, so that
// the notifications still find its ports bound.
func (t *Table) CloseDomain(domid uint16) { t.closeDomain(domid, true) }

// DestroyDomain simulates Xen destroying domain domid (xl destroy): its
// grants are revoked and its handles fail, like CloseDomain, but no unmap
// notification fires, because no kernel of that domain runs any more to
// clear a byte or send an event. Peers learn of it from xenstore
// (@releaseDomain), as on Xen.
func (t *Table) DestroyDomain(domid uint16) { t.closeDomain(domid, false) }

func (t *Table) closeDomain(domid uint16, notify bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.doms[domid]
	if d == nil {
		return
	}
	delete(t.doms, domid)
	d.dead = true
	regions := make([]*region, 0, len(d.regions))
	for r := range d.regions {
		regions = append(regions, r)
	}
	slices.SortFunc(regions, func(a, b *region) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	for _, r := range regions {
		// Everything the kernel does when a domain dies, except the
		// munmap: the region stays mapped until its owner closes it.
		if !notify {
			r.notify = gnt.UnmapNotify{}
			if r.hold != nil {
				r.hold.Release()
				r.hold = nil
			}
		}
		_ = t.closeLocked(r)
		r.orphaned = true
	}
}

// handle is what a Sharer and a Mapper have in common.
type handle struct {
	t      *Table
	dom    *domain
	kind   string // "gntalloc" or "gntdev", for messages
	closed bool   // guarded by t.mu
}

// checkLocked reports whether the handle may still be used. t.mu must be
// held.
func (h *handle) checkLocked() error {
	if h.closed {
		return fmt.Errorf("gntsim: %s handle of domain %d: %w", h.kind, h.dom.id, os.ErrClosed)
	}
	if h.dom.dead {
		return fmt.Errorf("gntsim: %s handle of domain %d: domain is dead: %w", h.kind, h.dom.id, os.ErrClosed)
	}
	return nil
}

// Close releases the handle. Regions shared or mapped through it stay valid
// until they are closed. A second Close returns an error wrapping
// os.ErrClosed.
func (h *handle) Close() error {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	if h.closed {
		return fmt.Errorf("gntsim: close %s handle of domain %d: %w", h.kind, h.dom.id, os.ErrClosed)
	}
	h.closed = true
	return nil
}

// checkNotifyLocked validates an unmap notification for a mapping of size bytes
// and, if it sends an event, takes a hold on its port, as gntalloc and gntdev
// take an evtchn_get reference when they accept SET_UNMAP_NOTIFY: the port
// must be bound by domain domid, and it stays bound until the notification
// has fired. t.mu must be held. The caller must release the returned hold
// (which may be nil) if it does not keep it.
func (t *Table) checkNotifyLocked(domid uint16, n *gnt.UnmapNotify, size int, writable bool) (*evtsim.PortRef, error) {
	if n == nil {
		return nil, nil
	}
	if n.ClearByte {
		if n.Offset < 0 || n.Offset >= size {
			return nil, fmt.Errorf("gntsim: unmap notify: clear-byte offset %d outside the %d-byte mapping: %w", n.Offset, size, syscall.EINVAL)
		}
		if !writable {
			// gntdev_ioctl_notify refuses CLEAR_BYTE on a read-only
			// mapping: the kernel could not write the byte either.
			return nil, fmt.Errorf("gntsim: unmap notify: clear-byte on a read-only mapping (gntdev refuses it; map writable): %w", syscall.EINVAL)
		}
	}
	if !n.SendEvent {
		return nil, nil
	}
	if t.events == nil {
		return nil, fmt.Errorf("gntsim: unmap notify: send-event on port %d, but the Table has no event switch (see NewTable): %w", n.Port, syscall.EINVAL)
	}
	hold, err := t.events.Hold(domid, evtchn.Port(n.Port))
	if err != nil {
		return nil, fmt.Errorf("gntsim: unmap notify: send-event on port %d of domain %d: %w (%w)", n.Port, domid, syscall.EINVAL, err)
	}
	return hold, nil
}

// sharer is a gnt.Sharer for one domain.
type sharer struct{ handle }

// Share allocates count zeroed pages (a fresh memfd on Linux), grants each
// one to domain peer (which may be the sharer itself), and maps them
// read-write here. It fails with an error wrapping gnt.ErrNoSpace if the domain would
// have more than the Table's limit pages granted at once, and with one
// wrapping syscall.EINVAL for a count below 1 or an invalid notification.
func (s *sharer) Share(peer uint16, count int, notify *gnt.UnmapNotify) (gnt.SharedRegion, error) {
	t, d := s.t, s.dom
	if count < 1 {
		return nil, fmt.Errorf("gntsim: share %d pages: count must be at least 1: %w", count, syscall.EINVAL)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := s.checkLocked(); err != nil {
		return nil, err
	}
	if count > t.limit-d.granted {
		return nil, fmt.Errorf("gntsim: gntalloc: %d pages already granted by domain %d, %d more requested (limit %d; "+
			"on Xen: gntalloc's limit, /sys/module/xen_gntalloc/parameters/limit; simulated: SimulatorConfig.GrantLimit or vchan-simd -grant-limit): %w",
			d.granted, d.id, count, t.limit, gnt.ErrNoSpace)
	}
	size := count * gnt.PageSize
	hold, err := t.checkNotifyLocked(d.id, notify, size, true)
	if err != nil {
		return nil, err
	}
	src, base, err := newPages(size)
	if err != nil {
		if hold != nil {
			hold.Release()
		}
		return nil, err
	}
	refs := make([]gnt.Ref, count)
	for i := range refs {
		ref := d.allocRef()
		d.grants[ref] = &grant{src: src, page: int64(i), peer: peer}
		refs[i] = ref
	}
	d.granted += count
	src.users = 1
	r := &sharedRegion{region: region{t: t, dom: d, srcs: []*pages{src}, writable: true, shared: true, refs: refs}}
	r.init(base, size, notify, hold)
	return r, nil
}

// allocRef returns an unused grant reference: increasing numbers from
// FirstRef, never 0, skipping ones still in use after a wrap-around. t.mu
// must be held.
func (d *domain) allocRef() gnt.Ref {
	for {
		ref := d.nextRef
		d.nextRef++
		if ref < FirstRef {
			continue
		}
		if _, used := d.grants[ref]; used {
			continue
		}
		return ref
	}
}

// mapper is a gnt.Mapper for one domain.
type mapper struct{ handle }

// Map maps the pages named by refs, which domain peer granted to this
// domain, into one contiguous region in order; the same reference may appear
// more than once. A read-only region is mapped PROT_READ only, so writes to
// it fault. A reference that peer has not granted (or has revoked), or has
// granted to another domain, gives an error wrapping gnt.ErrBadRef; no refs,
// more than MaxMapPages of them, pages of more than MaxMapShares Shares, or
// an invalid notification give one wrapping syscall.EINVAL. Off Linux, refs
// that are not consecutive pages of one Share give one wrapping
// errors.ErrUnsupported, and read-only regions are not protected.
func (m *mapper) Map(peer uint16, refs []gnt.Ref, writable bool, notify *gnt.UnmapNotify) (gnt.Region, error) {
	t, d := m.t, m.dom
	n := len(refs)
	if n < 1 || n > MaxMapPages {
		return nil, fmt.Errorf("gntsim: map %d pages: count must be 1..%d: %w", n, MaxMapPages, syscall.EINVAL)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := m.checkLocked(); err != nil {
		return nil, err
	}
	grants := make([]*grant, n)
	var srcs []*pages // the Shares the pages come from, each once
	pd := t.doms[peer]
	for i, ref := range refs {
		var g *grant
		if pd != nil {
			g = pd.grants[ref]
		}
		switch {
		case g == nil:
			return nil, fmt.Errorf("gntsim: domain %d mapping grant ref %d of domain %d: no such grant (never granted, or revoked): %w",
				d.id, ref, peer, gnt.ErrBadRef)
		case g.peer != d.id:
			return nil, fmt.Errorf("gntsim: domain %d mapping grant ref %d of domain %d: granted to domain %d, not %d: %w",
				d.id, ref, peer, g.peer, d.id, gnt.ErrBadRef)
		}
		grants[i] = g
		if !slices.Contains(srcs, g.src) {
			srcs = append(srcs, g.src)
		}
	}
	if len(srcs) > MaxMapShares {
		return nil, fmt.Errorf("gntsim: map %d pages: they come from %d shares, at most %d can be mapped at once: %w",
			n, len(srcs), MaxMapShares, syscall.EINVAL)
	}
	size := n * gnt.PageSize
	hold, err := t.checkNotifyLocked(d.id, notify, size, writable)
	if err != nil {
		return nil, err
	}
	base, err := mapGrants(grants, writable)
	if err != nil {
		if hold != nil {
			hold.Release()
		}
		return nil, err
	}
	d.mapped += n
	for _, src := range srcs {
		src.users++
	}
	r := &region{t: t, dom: d, srcs: srcs, grants: grants, writable: writable}
	r.init(base, size, notify, hold)
	return r, nil
}

// runEnd returns the end of the run of grants that starts at i: consecutive
// pages of one Share, which one mmap (or, off Linux, one slice) covers.
func runEnd(grants []*grant, i int) int {
	j := i + 1
	for j < len(grants) && grants[j].src == grants[i].src && grants[j].page == grants[i].page+int64(j-i) {
		j++
	}
	return j
}
