package gntsim

import (
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/gnt"
)

// region is a mapping of granted pages: one a domain shared (shared is set)
// or one it mapped from a peer.
type region struct {
	t    *Table
	dom  *domain
	seq  uint64
	base unsafe.Pointer
	mem  []byte

	// srcs are the Shares the pages come from, each once: a shared
	// region's own, or those a map names, each holding one use of it.
	srcs     []*pages
	writable bool
	shared   bool
	refs     []gnt.Ref // for a shared region
	grants   []*grant  // for a mapped region: its pages, in order

	notify gnt.UnmapNotify // zero if none
	hold   *evtsim.PortRef // for notify.SendEvent

	closed bool        // guarded by t.mu
	gone   atomic.Bool // set on close, read by Bytes without the lock
	// orphaned: closed because its domain died, but still mapped, since
	// objects of the "dead" domain live on in this process and may touch
	// the memory until they are closed; Close then unmaps it.
	orphaned bool
}

// init fills in the mapping and registers r with its domain. t.mu must be
// held.
func (r *region) init(base unsafe.Pointer, size int, notify *gnt.UnmapNotify, hold *evtsim.PortRef) {
	r.t.seq++
	r.seq = r.t.seq
	r.base = base
	r.mem = unsafe.Slice((*byte)(base), size)
	if notify != nil {
		r.notify = *notify
	}
	r.hold = hold
	r.dom.regions[r] = struct{}{}
}

// Bytes returns the mapped memory, or nil once the region is closed.
func (r *region) Bytes() []byte {
	if r.gone.Load() {
		return nil
	}
	return r.mem
}

// Close fires the unmap notification, if any, and unmaps the pages. For a
// shared region it also revokes the grants: the peer can no longer map them,
// but its existing mappings keep working. A second Close returns an error
// wrapping os.ErrClosed.
func (r *region) Close() error {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	if r.orphaned {
		r.orphaned = false
		return unmap(r)
	}
	if r.closed {
		return fmt.Errorf("gntsim: close region of domain %d: %w", r.dom.id, os.ErrClosed)
	}
	if err := r.t.closeLocked(r); err != nil {
		return err
	}
	return unmap(r)
}

func unmap(r *region) error {
	if err := munmap(r.base, len(r.mem)); err != nil {
		return fmt.Errorf("gntsim: munmap region of domain %d: %w", r.dom.id, err)
	}
	return nil
}

// closeLocked closes r, which must not be closed yet, except for the munmap
// itself, which the caller does. t.mu must be held.
func (t *Table) closeLocked(r *region) error {
	r.closed = true
	r.gone.Store(true)
	d := r.dom
	delete(d.regions, r)
	if r.shared {
		// Like gntalloc's unshare (docs/PROTOCOL.md §10): the references go
		// away for new maps. The peer's mappings hold the memory on their
		// own.
		for _, ref := range r.refs {
			delete(d.grants, ref)
		}
		d.granted -= len(r.refs)
	} else {
		d.mapped -= len(r.mem) / gnt.PageSize
	}
	for _, src := range r.srcs {
		src.put()
	}
	// The unmap notification, in the kernel's order: clear the byte, then
	// notify through the held LOCAL port, which wakes its remote end.
	if r.notify.ClearByte {
		gnt.ClearByte(&r.mem[r.notify.Offset])
	}
	if r.hold != nil {
		// The port may be gone with its dead domain; the kernel ignores
		// that too.
		_ = r.hold.Notify()
		r.hold.Release()
	}
	return nil
}

// sharedRegion is a region this domain shared; it adds the grant references.
type sharedRegion struct{ region }

// Refs returns a copy of the grant references of the pages, in page order.
func (r *sharedRegion) Refs() []gnt.Ref { return slices.Clone(r.refs) }

// put drops one use of p: its Share's, or a map's of its pages. The last
// one releases it (on Linux, closes its memfd: mappings hold the memory on
// their own). t.mu must be held.
func (p *pages) put() {
	p.users--
	if p.users == 0 {
		p.release()
	}
}
