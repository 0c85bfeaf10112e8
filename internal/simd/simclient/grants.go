//go:build linux

package simclient

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/gnt/gntsim"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// handle is what the client's Sharer and Mapper have in common.
type handle struct {
	d      *Domain
	kind   string // "gntalloc" or "gntdev", for messages
	closed atomic.Bool
}

func (h *handle) check() error {
	if h.closed.Load() {
		return fmt.Errorf("vchan simulator: %s handle of domain %d: %w", h.kind, h.d.domid, os.ErrClosed)
	}
	return nil
}

// Close releases the handle. Regions shared or mapped through it stay valid
// until they are closed. A second Close returns an error wrapping
// os.ErrClosed.
func (h *handle) Close() error {
	if h.closed.Swap(true) {
		return fmt.Errorf("vchan simulator: close %s handle of domain %d: %w", h.kind, h.d.domid, os.ErrClosed)
	}
	return nil
}

type sharer struct{ handle }

// Share asks the daemon for count zeroed pages granted to peer and maps
// them read-write here. Errors wrap gnt.ErrNoSpace past the grant limit
// and unix.EINVAL for a bad count or notification.
func (s *sharer) Share(peer uint16, count int, notify *gnt.UnmapNotify) (gnt.SharedRegion, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if count < 1 || count > simproto.MaxSharePages {
		return nil, fmt.Errorf("vchan simulator: share %d pages: count must be 1..%d: %w", count, simproto.MaxSharePages, unix.EINVAL)
	}
	fl, off, port := simproto.EncodeNotify(notify)
	p, fds, err := s.d.call("share", simproto.Msg(nil).U32(simproto.OpShare, uint32(peer), uint32(count), fl, off, port))
	if err != nil {
		return nil, err
	}
	defer closeAll(fds)
	id := p.U32()
	refs := make([]gnt.Ref, count)
	for i := range refs {
		refs[i] = gnt.Ref(p.U32())
	}
	if p.Bad || len(fds) != 1 {
		return nil, fmt.Errorf("vchan simulator: share: bad reply (%d descriptors)", len(fds))
	}
	size := count * gnt.PageSize
	base, err := unix.MmapPtr(fds[0], 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_, _, _ = s.d.call("unmap", simproto.Msg(nil).U32(simproto.OpUnmap, id))
		return nil, fmt.Errorf("vchan simulator: mmap %d shared pages: %w", count, err)
	}
	r := &sharedRegion{cregion: cregion{d: s.d, id: id, base: base, mem: unsafe.Slice((*byte)(base), size)}, refs: refs}
	return r, nil
}

type mapper struct{ handle }

// Map asks the daemon for the memory of the pages peer granted to this
// domain and maps it into one contiguous region, read-only (PROT_READ, from
// a read-only descriptor) unless writable. Errors wrap gnt.ErrBadRef for a
// reference not granted to this domain, unix.EINVAL for a bad count or
// notification.
func (m *mapper) Map(peer uint16, refs []gnt.Ref, writable bool, notify *gnt.UnmapNotify) (gnt.Region, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	n := len(refs)
	if n < 1 || n > gntsim.MaxMapPages {
		return nil, fmt.Errorf("vchan simulator: map %d pages: count must be 1..%d: %w", n, gntsim.MaxMapPages, unix.EINVAL)
	}
	fl, off, port := simproto.EncodeNotify(notify)
	w := uint32(0)
	if writable {
		w = 1
	}
	req := simproto.Msg(nil).U32(simproto.OpMap, uint32(peer), w, fl, off, port)
	for _, ref := range refs {
		req = req.U32(uint32(ref))
	}
	p, fds, err := m.d.call("map", req)
	if err != nil {
		return nil, err
	}
	defer closeAll(fds)
	id, nseg := p.U32(), p.U32()
	size := uintptr(n) * gnt.PageSize
	base, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		_, _, _ = m.d.call("unmap", simproto.Msg(nil).U32(simproto.OpUnmap, id))
		return nil, fmt.Errorf("vchan simulator: reserve %d bytes of address space: %w", size, err)
	}
	fail := func(err error) (gnt.Region, error) {
		unix.MunmapPtr(base, size)
		_, _, _ = m.d.call("unmap", simproto.Msg(nil).U32(simproto.OpUnmap, id))
		return nil, err
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	at := 0
	for range nseg {
		fi, first, count := int(p.U32()), int64(p.U32()), int(p.U32())
		if p.Bad || fi >= len(fds) || count < 1 || at+count > n {
			return fail(fmt.Errorf("vchan simulator: map: bad reply"))
		}
		addr := unsafe.Add(base, at*gnt.PageSize)
		if _, err := unix.MmapPtr(fds[fi], first*gnt.PageSize, addr, uintptr(count)*gnt.PageSize, prot, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
			return fail(fmt.Errorf("vchan simulator: mmap %d granted pages: %w", count, err))
		}
		at += count
	}
	if at != n {
		return fail(fmt.Errorf("vchan simulator: map: bad reply (%d of %d pages)", at, n))
	}
	return &cregion{d: m.d, id: id, base: base, mem: unsafe.Slice((*byte)(base), n*gnt.PageSize)}, nil
}

// cregion is a mapping made through the daemon, on the client side (the
// daemon holds a gntsim region of the same pages, by which it knows it).
type cregion struct {
	d    *Domain
	id   uint32
	base unsafe.Pointer
	mem  []byte

	mu     sync.Mutex
	closed bool
	gone   atomic.Bool // read by Bytes without the lock
}

// Bytes returns the mapped memory, or nil once the region is closed.
func (r *cregion) Bytes() []byte {
	if r.gone.Load() {
		return nil
	}
	return r.mem
}

// Close unmaps the pages and tells the daemon, which fires the unmap
// notification and, for a shared region, revokes the grants (mappings the
// peer already has stay valid). After Domain.Close the daemon has done that
// already, and Close only unmaps. A second Close returns an error wrapping
// os.ErrClosed.
func (r *cregion) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("vchan simulator: close region of domain %d: %w", r.d.domid, os.ErrClosed)
	}
	r.closed = true
	r.gone.Store(true)
	if err := unix.MunmapPtr(r.base, uintptr(len(r.mem))); err != nil {
		return fmt.Errorf("vchan simulator: munmap region of domain %d: %w", r.d.domid, err)
	}
	_, _, err := r.d.call("unmap", simproto.Msg(nil).U32(simproto.OpUnmap, r.id))
	if errors.Is(err, os.ErrClosed) {
		return nil // Domain closed: the daemon already unmapped it
	}
	return err
}

// sharedRegion is a region this domain shared; it adds the references.
type sharedRegion struct {
	cregion
	refs []gnt.Ref
}

// Refs returns a copy of the grant references of the pages, in page order.
func (r *sharedRegion) Refs() []gnt.Ref { return slices.Clone(r.refs) }
