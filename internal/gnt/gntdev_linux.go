//go:build linux

package gnt

// Mapping another domain's pages through /dev/xen/gntdev
// (docs/PROTOCOL.md §11), in the sequence of libxengnttab
// (xen tools/libs/gnttab/linux.c).

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/xendev"
)

// fdRef is a device file descriptor shared by a handle and the regions it
// created, closed when the last of them lets go: a region's Close still
// needs the descriptor after the handle's Close, and closing it early could
// let a later open reuse the number under the region's feet.
type fdRef struct {
	fd   int // set once; valid while refs > 0
	mu   sync.Mutex
	refs int
}

func newFdRef(fd int) *fdRef { return &fdRef{fd: fd, refs: 1} }

// acquire adds a reference; the caller must already hold one.
func (r *fdRef) acquire() {
	r.mu.Lock()
	r.refs++
	r.mu.Unlock()
}

// release drops a reference and closes the descriptor with the last one.
func (r *fdRef) release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs--
	if r.refs > 0 {
		return nil
	}
	return unix.Close(r.fd)
}

// unmapGrantRef frees the driver's slot of count pages at index
// (UNMAP_GRANT_REF).
func unmapGrantRef(fd int, index uint64, count int) error {
	u := gntdevUnmapGrantRef{Index: index, Count: uint32(count)}
	if _, err := xendev.Ioctl(fd, ioctlGntdevUnmapGrantRef, unsafe.Pointer(&u)); err != nil {
		return fmt.Errorf("gntdev: ioctl UNMAP_GRANT_REF (index %#x, %d pages): %w", index, count, err)
	}
	return nil
}

// mapper implements Mapper over /dev/xen/gntdev.
type mapper struct {
	mu     sync.RWMutex // Map holds it shared, Close exclusively
	dev    *fdRef
	closed bool
}

// mapRetries bounds the attempts to map a grant that Xen reports as paged
// out (EAGAIN), 1 ms apart as in libxengnttab (docs/PROTOCOL.md §11).
const mapRetries = 5000

// OpenMapper opens /dev/xen/gntdev. Its Map follows libxengnttab's sequence
// (docs/PROTOCOL.md §11): MAP_GRANT_REF, mmap, SET_UNMAP_NOTIFY, and
// UNMAP_GRANT_REF on failure.
func OpenMapper() (Mapper, error) {
	fd, err := xendev.Open(gntdevDev.Device, 0)
	if err != nil {
		return nil, err
	}
	return &mapper{dev: newFdRef(fd)}, nil
}

// Map maps the pages named by refs, granted by peer, into one region.
func (m *mapper) Map(peer uint16, refs []Ref, writable bool, notify *UnmapNotify) (Region, error) {
	count := len(refs)
	size, action, err := checkRequest("gntdev", count, notify)
	if err != nil {
		return nil, err
	}
	if action&unmapNotifyClearByte != 0 && !writable {
		// The driver refuses it with EINVAL (docs/PROTOCOL.md §5); say why here.
		return nil, fmt.Errorf("gntdev: unmap notify cannot clear a byte of a read-only mapping: map the pages writable")
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}

	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, errClosedHandle
	}
	fd := m.dev.fd

	p := mapGrantRefArg(peer, refs)
	arg := (*gntdevMapGrantRef)(p)

	var (
		mem   []byte
		index uint64
	)
	for attempt := 1; ; attempt++ {
		arg.Count = uint32(count)
		arg.Index = 0
		if _, err := xendev.Ioctl(fd, ioctlGntdevMapGrantRef, p); err != nil {
			if errors.Is(err, unix.EAGAIN) && attempt < mapRetries {
				time.Sleep(time.Millisecond)
				continue
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOSPC) {
				return nil, mapLimitError(peer, count, err, readLimit(gntdevDev.limit))
			}
			return nil, fmt.Errorf("gntdev: map %d pages from domain %d: ioctl MAP_GRANT_REF: %w", count, peer, err)
		}
		index = arg.Index
		off, err := mmapOffset("gntdev", index)
		if err != nil {
			return nil, errors.Join(err, unmapGrantRef(fd, index, count))
		}
		// mmap is where Xen maps the grants. EAGAIN means a granted page
		// is paged out; libxengnttab retries the mmap every 1 ms. Recent
		// drivers mark a slot used by its first mmap even when it fails, so
		// start over with a fresh slot instead.
		mem, err = unix.Mmap(fd, off, size, prot, unix.MAP_SHARED)
		if err == nil {
			break
		}
		uerr := unmapGrantRef(fd, index, count)
		if errors.Is(err, unix.EAGAIN) && uerr == nil && attempt < mapRetries {
			time.Sleep(time.Millisecond)
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EFAULT) {
			err = badRefError(peer, refs, err)
		} else {
			err = fmt.Errorf("gntdev: mmap %d pages from domain %d: %w", count, peer, err)
		}
		return nil, errors.Join(err, uerr)
	}

	if action != 0 {
		if err := setUnmapNotify(fd, ioctlGntdevSetUnmapNotify, "gntdev", index, notify, action); err != nil {
			return nil, errors.Join(err, unix.Munmap(mem), unmapGrantRef(fd, index, count))
		}
	}

	m.dev.acquire()
	return &mappedRegion{mapping: mapping{mem: mem}, index: index, count: count, dev: m.dev}, nil
}

// Close closes this handle's hold on /dev/xen/gntdev; the descriptor stays
// open until the last mapped region is closed.
func (m *mapper) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosedHandle
	}
	m.closed = true
	return m.dev.release()
}

// mappedRegion is foreign pages mapped through gntdev.
type mappedRegion struct {
	mapping
	index uint64
	count int
	dev   *fdRef
}

// Close unmaps the pages (the kernel then runs the unmap notification) and
// frees the driver's slot, as libxengnttab's unmap does: munmap, then
// UNMAP_GRANT_REF.
func (r *mappedRegion) Close() error {
	return r.close(func(mem []byte) error {
		var errs []error
		if err := unix.Munmap(mem); err != nil {
			errs = append(errs, fmt.Errorf("gntdev: munmap: %w", err))
		}
		if err := unmapGrantRef(r.dev.fd, r.index, r.count); err != nil {
			errs = append(errs, err)
		}
		if err := r.dev.release(); err != nil {
			errs = append(errs, fmt.Errorf("gntdev: close: %w", err))
		}
		return errors.Join(errs...)
	})
}
