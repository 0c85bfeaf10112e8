package gntsim

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/gnt"
)

// pages is the memory of one Share: a memfd, so that Map can map any of its
// pages anywhere, with the protection asked for.
type pages struct {
	fd    int
	rofd  int // read-only reopening of fd, for Files; -1 until needed
	users int // see put
}

// newPages creates a memfd of size zeroed bytes and maps it shared and
// read-write. The memfd stays open: grants name pages by (fd, offset).
func newPages(size int) (*pages, unsafe.Pointer, error) {
	fd, err := unix.MemfdCreate("gntsim", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("gntsim: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("gntsim: ftruncate memfd to %d bytes: %w", size, err)
	}
	base, err := unix.MmapPtr(fd, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("gntsim: mmap %d bytes of memfd: %w", size, err)
	}
	return &pages{fd: fd, rofd: -1}, base, nil
}

// release closes the memfd once its Share and every map of its pages are
// closed (see put): mappings hold the memory on their own.
func (p *pages) release() {
	unix.Close(p.fd)
	if p.rofd >= 0 {
		unix.Close(p.rofd)
	}
}

// mapGrants reserves an address range for len(grants) pages and maps each
// page over it from its memfd, MAP_FIXED, coalescing runs of consecutive
// pages of the same memfd into one mmap. t.mu must be held, so that no memfd
// is closed meanwhile.
func mapGrants(grants []*grant, writable bool) (unsafe.Pointer, error) {
	size := uintptr(len(grants)) * gnt.PageSize
	base, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("gntsim: reserve %d bytes of address space: %w", size, err)
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	for i := 0; i < len(grants); {
		g := grants[i]
		j := runEnd(grants, i)
		addr := unsafe.Add(base, i*gnt.PageSize)
		_, err := unix.MmapPtr(g.src.fd, g.page*gnt.PageSize, addr, uintptr(j-i)*gnt.PageSize, prot, unix.MAP_SHARED|unix.MAP_FIXED)
		if err != nil {
			unix.MunmapPtr(base, size)
			return nil, fmt.Errorf("gntsim: mmap %d granted pages: %w", j-i, err)
		}
		i = j
	}
	return base, nil
}

// munmap unmaps a region's memory.
func munmap(base unsafe.Pointer, size int) error { return unix.MunmapPtr(base, uintptr(size)) }
