//go:build linux

package gnt

// Sharing pages through /dev/xen/gntalloc (docs/PROTOCOL.md §10), in the
// sequence of libxengnttab (xen tools/libs/gnttab/linux.c).

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/xendev"
)

// sharer implements Sharer over /dev/xen/gntalloc.
type sharer struct {
	mu     sync.RWMutex // Share holds it shared, Close exclusively
	fd     int
	closed bool
}

// OpenSharer opens /dev/xen/gntalloc. Its Share follows libxengnttab's
// sequence (docs/PROTOCOL.md §10): ALLOC_GREF, mmap, SET_UNMAP_NOTIFY, and at
// once DEALLOC_GREF, so that the pages live exactly as long as the mapping
// and the region's Close is just munmap.
func OpenSharer() (Sharer, error) {
	fd, err := xendev.Open(gntallocDev.Device, 0)
	if err != nil {
		return nil, err
	}
	return &sharer{fd: fd}, nil
}

// Share allocates count zeroed pages, grants them writable to peer, and maps
// them here.
func (s *sharer) Share(peer uint16, count int, notify *UnmapNotify) (SharedRegion, error) {
	size, action, err := checkRequest("gntalloc", count, notify)
	if err != nil {
		return nil, err
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosedHandle
	}

	p := allocGrefArg(peer, count)
	if _, err := xendev.Ioctl(s.fd, ioctlGntallocAllocGref, p); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return nil, allocNoSpaceError(peer, count, err, readLimit(gntallocDev.limit))
		}
		return nil, fmt.Errorf("gntalloc: share %d pages with domain %d: ioctl ALLOC_GREF: %w", count, peer, err)
	}
	index, refs := allocGrefResult(p, count)

	// From here on the pages must be given back whatever happens:
	// DEALLOC_GREF drops the file's hold on them, the mapping (if any) keeps
	// them until munmap.
	dealloc := func() error {
		d := gntallocDeallocGref{Index: index, Count: uint32(count)}
		if _, err := xendev.Ioctl(s.fd, ioctlGntallocDeallocGref, unsafe.Pointer(&d)); err != nil {
			return fmt.Errorf("gntalloc: ioctl DEALLOC_GREF (index %#x, %d pages): %w", index, count, err)
		}
		return nil
	}

	off, err := mmapOffset("gntalloc", index)
	if err != nil {
		return nil, errors.Join(err, dealloc())
	}
	mem, err := unix.Mmap(s.fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		err = fmt.Errorf("gntalloc: mmap %d shared pages at %#x: %w", count, index, err)
		return nil, errors.Join(err, dealloc())
	}

	if action != 0 {
		if err := setUnmapNotify(s.fd, ioctlGntallocSetUnmapNotify, "gntalloc", index, notify, action); err != nil {
			return nil, errors.Join(err, unix.Munmap(mem), dealloc())
		}
	}

	if err := dealloc(); err != nil {
		// Should not happen (the index was just allocated). The pages would
		// stay tied to this handle until it is closed; give them back now.
		return nil, errors.Join(err, unix.Munmap(mem))
	}
	return &sharedRegion{mapping: mapping{mem: mem}, refs: refs}, nil
}

// Close closes /dev/xen/gntalloc. Shared regions stay valid: each mapping
// holds the pages (and the open file) until it is unmapped.
func (s *sharer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosedHandle
	}
	s.closed = true
	return unix.Close(s.fd)
}

// sharedRegion is pages allocated by gntalloc and mapped here.
type sharedRegion struct {
	mapping
	refs []Ref
}

// Refs returns the pages' grant references, in page order.
func (r *sharedRegion) Refs() []Ref {
	return append([]Ref(nil), r.refs...)
}

// Close unmaps the pages. The kernel then fires the unmap notification and
// ends the grants; pages the peer still maps are freed when it lets go.
func (r *sharedRegion) Close() error {
	return r.close(func(mem []byte) error {
		if err := unix.Munmap(mem); err != nil {
			return fmt.Errorf("gntalloc: munmap: %w", err)
		}
		return nil
	})
}
