//go:build !linux

package gntsim

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vchan-go/vchan/internal/gnt"
)

// pages is the memory of one Share. Without memfd (Linux only) it is
// ordinary Go memory: the garbage collector keeps it alive while any region
// uses it, as mappings keep a memfd's pages alive after the Share closes.
type pages struct {
	mem   []byte
	users int // see put
}

func newPages(size int) (*pages, unsafe.Pointer, error) {
	p := &pages{mem: make([]byte, size)}
	return p, unsafe.Pointer(unsafe.SliceData(p.mem)), nil
}

func (*pages) release() {}

// mapGrants returns the Share's memory itself, since pages cannot be mapped
// elsewhere without mmap of a memfd: the grants must be consecutive pages
// of one Share, in order, as a vchan maps its shared page and its rings.
// Writes to a read-only map are not prevented.
func mapGrants(grants []*grant, _ bool) (unsafe.Pointer, error) {
	if runEnd(grants, 0) != len(grants) {
		return nil, fmt.Errorf("gntsim: map %d pages: on %s a map must name consecutive pages of one share, in order "+
			"(mapping pages anywhere needs Linux's memfd): %w", len(grants), runtime.GOOS, errors.ErrUnsupported)
	}
	g := grants[0]
	return unsafe.Pointer(&g.src.mem[g.page*gnt.PageSize]), nil
}

// munmap does nothing: the garbage collector frees the memory.
func munmap(unsafe.Pointer, int) error { return nil }
