package gntsim

import (
	"bufio"
	"fmt"
	"os"
	"testing"
	"unsafe"

	"github.com/vchan-go/vchan/internal/gnt"
)

// These tests look at the memfd mappings themselves (/proc/self/maps,
// /proc/self/fd), which exist on Linux only.

// perms returns the permission field of the /proc/self/maps line that
// contains the first byte of b, e.g. "rw-s".
func perms(t *testing.T, b []byte) string {
	t.Helper()
	addr := uintptr(unsafe.Pointer(&b[0]))
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var lo, hi uintptr
		var p string
		if _, err := fmt.Sscanf(sc.Text(), "%x-%x %s", &lo, &hi, &p); err != nil {
			continue
		}
		if lo <= addr && addr < hi {
			return p
		}
	}
	t.Fatalf("address %#x not in /proc/self/maps", addr)
	return ""
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestShareAndMapShareMemory(t *testing.T) {
	tb := NewTable(nil, 0)
	fds := openFDs(t)
	s := share(t, tb, 0, 1, 3, nil)
	sb := s.Bytes()
	if len(sb) != 3*gnt.PageSize {
		t.Fatalf("shared region is %d bytes, want %d", len(sb), 3*gnt.PageSize)
	}
	for i, c := range sb {
		if c != 0 {
			t.Fatalf("new page not zeroed at byte %d", i)
		}
	}
	if g := tb.Granted(0); g != 3 {
		t.Errorf("Granted(0) = %d, want 3", g)
	}
	m := mapRefs(t, tb, 1, 0, s.Refs(), true, nil)
	mb := m.Bytes()
	if len(mb) != len(sb) {
		t.Fatalf("mapped region is %d bytes, want %d", len(mb), len(sb))
	}
	if &mb[0] == &sb[0] {
		t.Fatal("mapping returned the sharer's own address")
	}
	if got := tb.Mapped(1); got != 3 {
		t.Errorf("Mapped(1) = %d, want 3", got)
	}
	for p := range 3 {
		sb[p*gnt.PageSize+7] = byte(0x10 + p)
		mb[p*gnt.PageSize+9] = byte(0x20 + p)
	}
	for p := range 3 {
		if got := mb[p*gnt.PageSize+7]; got != byte(0x10+p) {
			t.Errorf("page %d: sharer's write not seen by mapper: %#x", p, got)
		}
		if got := sb[p*gnt.PageSize+9]; got != byte(0x20+p) {
			t.Errorf("page %d: mapper's write not seen by sharer: %#x", p, got)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkEmpty(t, tb, 0, 1)
	if got := openFDs(t); got != fds {
		t.Errorf("%d file descriptors open after closing everything, %d before", got, fds)
	}
}

// Refs from several shares, out of order and repeated, land in the right
// places.
func TestMapMixedRefs(t *testing.T) {
	tb := NewTable(nil, 0)
	a := share(t, tb, 0, 1, 2, nil)
	b := share(t, tb, 0, 1, 2, nil)
	defer a.Close()
	defer b.Close()
	a.Bytes()[0], a.Bytes()[gnt.PageSize] = 'A', 'B'
	b.Bytes()[0], b.Bytes()[gnt.PageSize] = 'C', 'D'
	ar, br := a.Refs(), b.Refs()
	refs := []gnt.Ref{br[1], ar[0], ar[1], br[0], ar[0]}
	m := mapRefs(t, tb, 1, 0, refs, false, nil)
	defer m.Close()
	var got []byte
	for p := range refs {
		got = append(got, m.Bytes()[p*gnt.PageSize])
	}
	if string(got) != "DABCA" {
		t.Errorf("pages read %q, want %q", got, "DABCA")
	}
}

func TestProtection(t *testing.T) {
	tb := NewTable(nil, 0)
	s := share(t, tb, 0, 1, 2, nil)
	defer s.Close()
	ro := mapRefs(t, tb, 1, 0, s.Refs(), false, nil)
	defer ro.Close()
	rw := mapRefs(t, tb, 1, 0, s.Refs(), true, nil)
	defer rw.Close()
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"sharer", s.Bytes(), "rw-s"},
		{"read-only map", ro.Bytes(), "r--s"},
		{"read-only map, last page", ro.Bytes()[gnt.PageSize:], "r--s"},
		{"writable map", rw.Bytes(), "rw-s"},
	} {
		if got := perms(t, tc.b); got != tc.want {
			t.Errorf("%s: permissions %q, want %q", tc.name, got, tc.want)
		}
	}
	s.Bytes()[5] = 42
	if ro.Bytes()[5] != 42 {
		t.Error("read-only map does not see the sharer's write")
	}
	if got := tb.Mapped(1); got != 4 {
		t.Errorf("Mapped(1) = %d, want 4", got)
	}
}
