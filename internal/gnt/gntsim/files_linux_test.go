package gntsim

import (
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/gnt"
)

// Files gives another process what it needs to map a region itself (as
// vchan-simd's clients do): the memfds, each once, and the runs of pages in
// them; read-only descriptors for a read-only map; open while the region is.
func TestFiles(t *testing.T) {
	tb := NewTable(nil, 0)
	fdsBefore := openFDs(t)
	a := share(t, tb, 0, 1, 2, nil)
	b := share(t, tb, 0, 1, 2, nil)
	copy(a.Bytes(), "A0")
	copy(a.Bytes()[gnt.PageSize:], "A1")
	copy(b.Bytes(), "B0")
	copy(b.Bytes()[gnt.PageSize:], "B1")

	fds, segs, err := Files(a)
	if err != nil || len(fds) != 1 || !slices.Equal(segs, []Segment{{File: 0, Page: 0, Pages: 2}}) {
		t.Fatalf("Files(share) = %v, %v, %v; want one memfd, one run of 2 pages", fds, segs, err)
	}

	ar, br := a.Refs(), b.Refs()
	m := mapRefs(t, tb, 1, 0, []gnt.Ref{br[1], ar[0], ar[1], br[0]}, false, nil)
	fds, segs, err = Files(m)
	if err != nil {
		t.Fatal(err)
	}
	want := []Segment{{File: 0, Page: 1, Pages: 1}, {File: 1, Page: 0, Pages: 2}, {File: 0, Page: 0, Pages: 1}}
	if len(fds) != 2 || !slices.Equal(segs, want) {
		t.Fatalf("Files(map) = %v, %v; want 2 memfds and runs %v", fds, segs, want)
	}
	// The shares may close: the map keeps their memfds open.
	a.Close()
	b.Close()
	at := 0
	for _, s := range segs {
		for p := range s.Pages {
			buf := make([]byte, 2)
			if _, err := unix.Pread(fds[s.File], buf, (s.Page+int64(p))*gnt.PageSize); err != nil {
				t.Fatalf("pread from memfd %d: %v", s.File, err)
			}
			if got, want := string(buf), string(m.Bytes()[at*gnt.PageSize:][:2]); got != want {
				t.Errorf("page %d: memfd has %q, the map %q", at, got, want)
			}
			at++
		}
	}
	if _, err := unix.Mmap(fds[0], 0, gnt.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, syscall.EACCES) {
		t.Errorf("writable mmap of a read-only map's memfd = %v, want EACCES", err)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Files(m); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Files of a closed region = %v, want os.ErrClosed", err)
	}
	if got := openFDs(t); got != fdsBefore {
		t.Errorf("%d file descriptors open after closing everything, %d before", got, fdsBefore)
	}
}
