package gntsim

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/gnt"
)

// Segment is a run of a region's pages that lie one after another in one of
// the memfds Files returns.
type Segment struct {
	File  int   // index into the descriptors Files returns
	Page  int64 // first page of the run in that memfd
	Pages int   // length of the run
}

// Files returns where the memory of r lives, for another process that maps
// it itself (vchan-simd passes it over SCM_RIGHTS): the memfds holding r's
// pages, each once (at most MaxMapShares), and r's pages, in order, as runs
// in them. For a read-only map the descriptors are read-only reopenings
// (through /proc/self/fd), so that no mapping of them can be writable.
//
// The descriptors belong to the Table: they stay open at least until r is
// closed, and the caller must not close them. r must be an open region of a
// Table, shared through its Sharer or mapped through its Mapper.
func Files(r gnt.Region) ([]int, []Segment, error) {
	var reg *region
	switch r := r.(type) {
	case *region:
		reg = r
	case *sharedRegion:
		reg = &r.region
	default:
		return nil, nil, fmt.Errorf("gntsim: files of a %T, not a region of a gntsim Table: %w", r, syscall.EINVAL)
	}
	reg.t.mu.Lock()
	defer reg.t.mu.Unlock()
	if reg.closed {
		return nil, nil, fmt.Errorf("gntsim: files of a region of domain %d: %w", reg.dom.id, os.ErrClosed)
	}
	fds := make([]int, len(reg.srcs))
	for i, src := range reg.srcs {
		fds[i] = src.fd
		if !reg.writable {
			fd, err := src.readOnlyFD()
			if err != nil {
				return nil, nil, err
			}
			fds[i] = fd
		}
	}
	if reg.shared {
		return fds, []Segment{{File: 0, Page: 0, Pages: len(reg.refs)}}, nil
	}
	var segs []Segment
	for i := 0; i < len(reg.grants); {
		j := runEnd(reg.grants, i)
		g := reg.grants[i]
		segs = append(segs, Segment{File: slices.Index(reg.srcs, g.src), Page: g.page, Pages: j - i})
		i = j
	}
	return fds, segs, nil
}

// readOnlyFD returns a read-only descriptor of the memfd, opened on first
// use: mapped MAP_SHARED, it can never be written through. t.mu must be
// held.
func (p *pages) readOnlyFD() (int, error) {
	if p.rofd < 0 {
		fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(p.fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("gntsim: reopen memfd read-only: %w", err)
		}
		p.rofd = fd
	}
	return p.rofd, nil
}
