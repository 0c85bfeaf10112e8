//go:build linux

package gnt

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/xendev"
)

// There is no Xen here: these tests cover everything that does not need the
// real devices (error texts, argument checks, the ioctl argument buffers)
// and skip, saying why, what does.

// TestOpenErrorHints checks that a failed open names each device and its
// module; package xendev tests the hints for every errno.
func TestOpenErrorHints(t *testing.T) {
	for d, want := range map[devInfo]string{
		gntallocDev: "open /dev/xen/gntalloc: no such file or directory: not running under Xen, " +
			"or the xen-gntalloc module is not loaded (try: modprobe xen-gntalloc)",
		gntdevDev: "open /dev/xen/gntdev: no such file or directory: not running under Xen, " +
			"or the xen-gntdev module is not loaded (try: modprobe xen-gntdev)",
	} {
		if err := xendev.OpenError(d.Device, unix.ENOENT); err.Error() != want {
			t.Errorf("OpenError(%s, ENOENT) = %q, want %q", d.Path, err, want)
		}
	}
}

func TestOpenOnThisMachine(t *testing.T) {
	for _, tc := range []struct {
		d    devInfo
		open func() (any, error)
	}{
		{gntallocDev, func() (any, error) { return OpenSharer() }},
		{gntdevDev, func() (any, error) { return OpenMapper() }},
	} {
		t.Run(tc.d.Module, func(t *testing.T) {
			if _, err := os.Stat(tc.d.Path); err == nil {
				t.Skipf("%s exists: this machine runs under Xen, so the missing-device error cannot be checked", tc.d.Path)
			}
			h, err := tc.open()
			if err == nil {
				t.Fatalf("opening %s succeeded though it does not exist: %v", tc.d.Path, h)
			}
			want := "modprobe " + tc.d.Module
			if !strings.Contains(err.Error(), want) {
				t.Errorf("opening %s: %q, want the hint %q", tc.d.Path, err, want)
			}
			t.Log(err)
		})
	}
}

func TestAllocNoSpaceError(t *testing.T) {
	err := allocNoSpaceError(7, 3, unix.ENOSPC, "1024")
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, unix.ENOSPC) {
		t.Errorf("%v: does not wrap ErrNoSpace and ENOSPC", err)
	}
	for _, want := range []string{
		"share 3 pages with domain 7",
		"no space left on device",
		"/sys/module/xen_gntalloc/parameters/limit",
		"current value is 1024",
		"echo 2048 > /sys/module/xen_gntalloc/parameters/limit",
		"gnttab_max_frames",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not contain %q", err, want)
		}
	}

	err = allocNoSpaceError(7, 3, unix.ENOSPC, "")
	if want := "echo N > /sys/module/xen_gntalloc/parameters/limit"; !strings.Contains(err.Error(), want) {
		t.Errorf("unknown limit: %q does not contain %q", err, want)
	}
	// A request bigger than the current limit asks for enough.
	err = allocNoSpaceError(7, 300, unix.ENOSPC, "100")
	if want := "echo 400 > "; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not contain %q", err, want)
	}
}

func TestMapLimitError(t *testing.T) {
	err := mapLimitError(2, 257, unix.EINVAL, "65536")
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, unix.EINVAL) {
		t.Errorf("%v: does not wrap ErrNoSpace and EINVAL", err)
	}
	for _, want := range []string{
		"map 257 pages from domain 2",
		"/sys/module/xen_gntdev/parameters/limit",
		"echo 131072 > /sys/module/xen_gntdev/parameters/limit",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not contain %q", err, want)
		}
	}
}

func TestBadRefError(t *testing.T) {
	err := badRefError(4, []Ref{8, 9}, unix.EINVAL)
	if !errors.Is(err, ErrBadRef) || !errors.Is(err, unix.EINVAL) {
		t.Errorf("%v: does not wrap ErrBadRef and EINVAL", err)
	}
	if want := "map grant references [8 9] from domain 4"; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not contain %q", err, want)
	}
	many := make([]Ref, 257)
	err = badRefError(4, many, unix.EINVAL)
	if want := "(and 249 more)"; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not contain %q", err, want)
	}
}

func TestNotifyErrorNamesThePort(t *testing.T) {
	err := notifyError("gntdev", &UnmapNotify{SendEvent: true, Port: 12}, unix.EINVAL)
	if want := "event channel port 12 must be bound through /dev/xen/evtchn"; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not contain %q", err, want)
	}
}

// devNull opens /dev/null as a stand-in descriptor: it accepts no ioctl
// (ENOTTY), so calls that get past validation fail cleanly there.
func devNull(t *testing.T) int {
	t.Helper()
	fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestShareRejectsBadArguments(t *testing.T) {
	s := &sharer{fd: devNull(t)}
	defer s.Close()
	for _, tc := range []struct {
		name   string
		count  int
		notify *UnmapNotify
		want   string
	}{
		{"zero pages", 0, nil, "between 1 and 65536"},
		{"negative pages", -1, nil, "between 1 and 65536"},
		{"too many pages", maxPages + 1, nil, "between 1 and 65536"},
		{"negative offset", 1, &UnmapNotify{ClearByte: true, Offset: -1}, "outside"},
		{"offset past the end", 2, &UnmapNotify{ClearByte: true, Offset: 2 * PageSize}, "outside"},
		{"event offset past the end", 1, &UnmapNotify{SendEvent: true, Offset: PageSize}, "outside"},
	} {
		r, err := s.Share(1, tc.count, tc.notify)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Share = %v, %v; want an error containing %q", tc.name, r, err, tc.want)
		}
	}
	// Valid arguments reach the ioctl, which /dev/null refuses.
	_, err := s.Share(1, 257, &UnmapNotify{ClearByte: true, Offset: 21, SendEvent: true, Port: 5})
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), "ALLOC_GREF") {
		t.Errorf("Share on /dev/null = %v, want ENOTTY from ALLOC_GREF", err)
	}
}

func TestMapRejectsBadArguments(t *testing.T) {
	m := &mapper{dev: newFdRef(devNull(t))}
	defer m.Close()
	for _, tc := range []struct {
		name     string
		refs     []Ref
		writable bool
		notify   *UnmapNotify
		want     string
	}{
		{"no refs", nil, true, nil, "between 1 and 65536"},
		{"too many refs", make([]Ref, maxPages+1), true, nil, "between 1 and 65536"},
		{"offset past the end", []Ref{1}, true, &UnmapNotify{ClearByte: true, Offset: PageSize}, "outside"},
		{"clear byte read-only", []Ref{1}, false, &UnmapNotify{ClearByte: true, Offset: 20},
			"unmap notify cannot clear a byte of a read-only mapping: map the pages writable"},
	} {
		r, err := m.Map(1, tc.refs, tc.writable, tc.notify)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Map = %v, %v; want an error containing %q", tc.name, r, err, tc.want)
		}
	}
	// An event-only notification on a read-only map is allowed and reaches
	// the ioctl.
	_, err := m.Map(1, []Ref{1, 2}, false, &UnmapNotify{SendEvent: true, Port: 3})
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), "MAP_GRANT_REF") {
		t.Errorf("Map on /dev/null = %v, want ENOTTY from MAP_GRANT_REF", err)
	}
}

func TestUseAfterClose(t *testing.T) {
	s := &sharer{fd: devNull(t)}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Share(1, 1, nil); err != errClosedHandle {
		t.Errorf("Share after Close = %v, want %v", err, errClosedHandle)
	}
	if err := s.Close(); err != errClosedHandle {
		t.Errorf("second Close = %v, want %v", err, errClosedHandle)
	}

	m := &mapper{dev: newFdRef(devNull(t))}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Map(1, []Ref{1}, true, nil); err != errClosedHandle {
		t.Errorf("Map after Close = %v, want %v", err, errClosedHandle)
	}
	if err := m.Close(); err != errClosedHandle {
		t.Errorf("second Close = %v, want %v", err, errClosedHandle)
	}
}

// TestFdRefKeepsDescriptor checks that a mapper's descriptor outlives the
// mapper while a region still needs it for UNMAP_GRANT_REF.
func TestFdRefKeepsDescriptor(t *testing.T) {
	fd := devNull(t)
	r := newFdRef(fd)
	// A region takes a reference, then the mapper is closed.
	r.acquire()
	if err := r.release(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor closed while a region holds it: %v", err)
	}
	// The region is closed.
	if err := r.release(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("descriptor still open after the last release: %v", err)
	}
}

// TestAllocGrefBuffer checks the ALLOC_GREF argument byte by byte, as the
// kernel reads and writes it: the fixed part in <xen/gntalloc.h> order, then
// the grant references.
func TestAllocGrefBuffer(t *testing.T) {
	for _, count := range []int{1, 2, 3, 257} {
		size := allocGrefSize(count)
		if want := max(24, 16+4*uintptr(count)); size != want {
			t.Errorf("allocGrefSize(%d) = %d, want %d", count, size, want)
		}
		p := allocGrefArg(0x1234, count)
		b := unsafe.Slice((*byte)(p), size)
		le := binary.LittleEndian
		if got := le.Uint16(b[0:]); got != 0x1234 {
			t.Errorf("domid = %#x", got)
		}
		if got := le.Uint16(b[2:]); got != gntallocFlagWritable {
			t.Errorf("flags = %#x", got)
		}
		if got := le.Uint32(b[4:]); got != uint32(count) {
			t.Errorf("count = %d", got)
		}
		// What the kernel writes back.
		le.PutUint64(b[8:], 0x5000)
		for i := range count {
			le.PutUint32(b[16+4*i:], uint32(100+i))
		}
		index, refs := allocGrefResult(p, count)
		if index != 0x5000 {
			t.Errorf("index = %#x", index)
		}
		for i, r := range refs {
			if r != Ref(100+i) {
				t.Fatalf("refs[%d] = %d, want %d", i, r, 100+i)
			}
		}
	}
}

// TestMapGrantRefBuffer checks the MAP_GRANT_REF argument byte by byte.
func TestMapGrantRefBuffer(t *testing.T) {
	refs := []Ref{5, 6, 0xfffffff0}
	size := mapGrantRefSize(len(refs))
	if size != 16+8*3 {
		t.Fatalf("mapGrantRefSize(3) = %d, want 40", size)
	}
	if s := mapGrantRefSize(1); s != 24 {
		t.Errorf("mapGrantRefSize(1) = %d, want 24", s)
	}
	p := mapGrantRefArg(9, refs)
	b := unsafe.Slice((*byte)(p), size)
	le := binary.LittleEndian
	if got := le.Uint32(b[0:]); got != 3 {
		t.Errorf("count = %d", got)
	}
	if got := le.Uint32(b[4:]) | uint32(le.Uint64(b[8:])); got != 0 {
		t.Errorf("pad or index not zero")
	}
	for i, r := range refs {
		if d, got := le.Uint32(b[16+8*i:]), le.Uint32(b[20+8*i:]); d != 9 || got != uint32(r) {
			t.Errorf("refs[%d] = (domid %d, ref %d), want (9, %d)", i, d, got, r)
		}
	}
}

// TestRealDevices runs one share and one map when the devices exist. A
// domain can map its own grants (XEN-LAB.md), so this works in dom0.
func TestRealDevices(t *testing.T) {
	if _, err := os.Stat(gntallocDev.Path); err != nil {
		t.Skipf("needs Xen: %s is missing (%v)", gntallocDev.Path, err)
	}
	if _, err := os.Stat(gntdevDev.Path); err != nil {
		t.Skipf("needs Xen: %s is missing (%v)", gntdevDev.Path, err)
	}
	self := os.Getenv("VCHAN_TEST_DOMID")
	if self == "" {
		t.Skip("needs VCHAN_TEST_DOMID, this domain's id, to grant pages to itself")
	}
	id, err := strconv.ParseUint(self, 10, 16)
	if err != nil {
		t.Fatalf("VCHAN_TEST_DOMID=%q: %v", self, err)
	}
	domid := uint16(id)
	s, err := OpenSharer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := OpenMapper()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sr, err := s.Share(domid, 2, &UnmapNotify{ClearByte: true, Offset: 21})
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	copy(sr.Bytes(), "hello")
	mr, err := m.Map(domid, sr.Refs(), true, &UnmapNotify{ClearByte: true, Offset: PageSize + 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(mr.Bytes()[:5]); got != "hello" {
		t.Errorf("mapped page reads %q", got)
	}
	mr.Bytes()[PageSize+20] = 1
	if err := mr.Close(); err != nil {
		t.Fatal(err)
	}
	if sr.Bytes()[PageSize+20] != 0 {
		t.Errorf("unmap notify did not clear the byte")
	}
}
