//go:build linux

package gnt

// The real grant devices: /dev/xen/gntalloc to share pages (docs/PROTOCOL.md §10)
// and /dev/xen/gntdev to map pages another domain shared (docs/PROTOCOL.md §11).
// The sequences follow libxengnttab (xen tools/libs/gnttab/linux.c); the
// ioctl structs mirror the Linux uapi headers <xen/gntalloc.h> and
// <xen/gntdev.h> field for field, and layout_linux_test.go checks them
// against the headers with gcc.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxPages is the largest number of pages one Share or Map accepts. A vchan
// needs at most 257 (one shared page plus 256 ring pages, docs/PROTOCOL.md §1.3);
// 1<<16 is also the default per-request limit of recent gntdev drivers.
const maxPages = 1 << 16

// ioctl request numbers: _IOC(_IOC_NONE, type, nr, sizeof(struct)) in the
// asm-generic encoding that x86 and Arm, the architectures Xen guests run
// on, use: dir<<30 | size<<16 | type<<8 | nr, with _IOC_NONE = 0. The size
// is the C struct's, flexible one-element array included, so it differs on
// 386 exactly where C's does. On amd64 and arm64 the values are the ones in
// docs/PROTOCOL.md §10 and §11.
const (
	iocNone      = 0
	iocDirShift  = 30
	iocSizeShift = 16
	iocTypeShift = 8

	// IOCTL_GNTALLOC_ALLOC_GREF = 0x00184705 on amd64.
	ioctlGntallocAllocGref = iocNone<<iocDirShift | unsafe.Sizeof(gntallocAllocGref{})<<iocSizeShift | 'G'<<iocTypeShift | 5
	// IOCTL_GNTALLOC_DEALLOC_GREF = 0x00104706 on amd64.
	ioctlGntallocDeallocGref = iocNone<<iocDirShift | unsafe.Sizeof(gntallocDeallocGref{})<<iocSizeShift | 'G'<<iocTypeShift | 6
	// IOCTL_GNTALLOC_SET_UNMAP_NOTIFY = 0x00104707 on amd64.
	ioctlGntallocSetUnmapNotify = iocNone<<iocDirShift | unsafe.Sizeof(unmapNotifyArg{})<<iocSizeShift | 'G'<<iocTypeShift | 7

	// IOCTL_GNTDEV_MAP_GRANT_REF = 0x00184700 on amd64.
	ioctlGntdevMapGrantRef = iocNone<<iocDirShift | unsafe.Sizeof(gntdevMapGrantRef{})<<iocSizeShift | 'G'<<iocTypeShift // nr 0
	// IOCTL_GNTDEV_UNMAP_GRANT_REF = 0x00104701 on amd64.
	ioctlGntdevUnmapGrantRef = iocNone<<iocDirShift | unsafe.Sizeof(gntdevUnmapGrantRef{})<<iocSizeShift | 'G'<<iocTypeShift | 1
	// IOCTL_GNTDEV_SET_UNMAP_NOTIFY = 0x00104707 on amd64, the same number
	// as gntalloc's (the structs are identical).
	ioctlGntdevSetUnmapNotify = iocNone<<iocDirShift | unsafe.Sizeof(unmapNotifyArg{})<<iocSizeShift | 'G'<<iocTypeShift | 7

	// GNTALLOC_FLAG_WRITABLE.
	gntallocFlagWritable = 1
	// UNMAP_NOTIFY_CLEAR_BYTE and UNMAP_NOTIFY_SEND_EVENT (both headers).
	unmapNotifyClearByte = 0x1
	unmapNotifySendEvent = 0x2
)

// gntallocAllocGref is struct ioctl_gntalloc_alloc_gref. The kernel writes
// Count grant references starting at GrefIDs, so the argument passed is a
// larger buffer that starts with this struct (allocGrefBuf).
type gntallocAllocGref struct {
	Domid   uint16    // in: the domain to grant access to
	Flags   uint16    // in: gntallocFlagWritable
	Count   uint32    // in: number of pages
	Index   uint64    // out: the mmap offset
	GrefIDs [1]uint32 // out: Count grant references (variable size)
}

// gntallocDeallocGref is struct ioctl_gntalloc_dealloc_gref.
type gntallocDeallocGref struct {
	Index uint64
	Count uint32
	_     uint32 // C tail padding
}

// unmapNotifyArg is struct ioctl_gntalloc_unmap_notify, which is also
// struct ioctl_gntdev_unmap_notify.
type unmapNotifyArg struct {
	Index  uint64 // mmap offset of the mapping plus the byte's offset in it
	Action uint32 // unmapNotifyClearByte | unmapNotifySendEvent
	Port   uint32 // event_channel_port
}

// gntdevGrantRef is struct ioctl_gntdev_grant_ref.
type gntdevGrantRef struct {
	Domid uint32
	Ref   uint32
}

// gntdevMapGrantRef is struct ioctl_gntdev_map_grant_ref. The kernel reads
// Count entries starting at Refs (mapGrantRefBuf).
type gntdevMapGrantRef struct {
	Count uint32
	Pad   uint32
	Index uint64            // out: the mmap offset
	Refs  [1]gntdevGrantRef // in: Count entries (variable size)
}

// gntdevUnmapGrantRef is struct ioctl_gntdev_unmap_grant_ref.
type gntdevUnmapGrantRef struct {
	Index uint64
	Count uint32
	Pad   uint32
}

// ioctl issues one ioctl whose argument is a pointer. The conversion to
// uintptr is written in the call to unix.Syscall so that the pointed-to
// memory stays alive and in place for the call (package unsafe, rule 4).
func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

// argBuf returns zeroed, 8-byte aligned memory of at least size bytes for
// an ioctl argument with a variable-size tail.
func argBuf(size uintptr) unsafe.Pointer {
	words := make([]uint64, (size+7)/8)
	return unsafe.Pointer(&words[0])
}

// allocGrefSize is the size of the IOCTL_GNTALLOC_ALLOC_GREF argument for
// count pages. The driver copies sizeof(struct) in and out whole (one gref
// included), then writes count grefs from offsetof(gref_ids) (docs/PROTOCOL.md
// §10): the buffer must hold both.
func allocGrefSize(count int) uintptr {
	var a gntallocAllocGref
	return max(unsafe.Sizeof(a), unsafe.Offsetof(a.GrefIDs)+uintptr(count)*unsafe.Sizeof(a.GrefIDs[0]))
}

// allocGrefArg builds the IOCTL_GNTALLOC_ALLOC_GREF argument: count pages,
// writable by domain peer.
func allocGrefArg(peer uint16, count int) unsafe.Pointer {
	p := argBuf(allocGrefSize(count))
	a := (*gntallocAllocGref)(p)
	a.Domid = peer
	a.Flags = gntallocFlagWritable
	a.Count = uint32(count)
	return p
}

// allocGrefResult reads what IOCTL_GNTALLOC_ALLOC_GREF returned in p: the
// mmap index and the count grant references.
func allocGrefResult(p unsafe.Pointer, count int) (index uint64, refs []Ref) {
	a := (*gntallocAllocGref)(p)
	ids := unsafe.Slice((*uint32)(unsafe.Add(p, unsafe.Offsetof(a.GrefIDs))), count)
	refs = make([]Ref, count)
	for i, id := range ids {
		refs[i] = Ref(id)
	}
	return a.Index, refs
}

// mapGrantRefSize is the size of the IOCTL_GNTDEV_MAP_GRANT_REF argument for
// count grants: the driver reads count (domid, ref) pairs from
// offsetof(refs) and copies sizeof(struct) back (docs/PROTOCOL.md §11).
func mapGrantRefSize(count int) uintptr {
	var m gntdevMapGrantRef
	return max(unsafe.Sizeof(m), unsafe.Offsetof(m.Refs)+uintptr(count)*unsafe.Sizeof(m.Refs[0]))
}

// mapGrantRefArg builds the IOCTL_GNTDEV_MAP_GRANT_REF argument for refs,
// all granted by domain peer.
func mapGrantRefArg(peer uint16, refs []Ref) unsafe.Pointer {
	p := argBuf(mapGrantRefSize(len(refs)))
	m := (*gntdevMapGrantRef)(p)
	m.Count = uint32(len(refs))
	grants := unsafe.Slice((*gntdevGrantRef)(unsafe.Add(p, unsafe.Offsetof(m.Refs))), len(refs))
	for i, ref := range refs {
		grants[i] = gntdevGrantRef{Domid: uint32(peer), Ref: uint32(ref)}
	}
	return p
}

// devInfo names one grant device for error messages.
type devInfo struct {
	path   string // /dev/xen/gntalloc
	module string // xen-gntalloc
	limit  string // the module's limit parameter in sysfs
}

var (
	gntallocDev = devInfo{"/dev/xen/gntalloc", "xen-gntalloc", "/sys/module/xen_gntalloc/parameters/limit"}
	gntdevDev   = devInfo{"/dev/xen/gntdev", "xen-gntdev", "/sys/module/xen_gntdev/parameters/limit"}
)

// openDev opens a grant device read-write, close-on-exec, as libxengnttab
// does.
func openDev(d devInfo) (int, error) {
	for {
		fd, err := unix.Open(d.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, openError(d, err)
		}
		return fd, nil
	}
}

// openError explains a failed open of a grant device: what is missing and
// how to fix it.
func openError(d devInfo, errno error) error {
	pe := &os.PathError{Op: "open", Path: d.path, Err: errno}
	var hint string
	switch {
	case errors.Is(errno, unix.ENOENT):
		hint = fmt.Sprintf("not running under Xen, or the %s module is not loaded (try: modprobe %s)", d.module, d.module)
	case errors.Is(errno, unix.EACCES), errors.Is(errno, unix.EPERM):
		hint = "run as root or give this user access to " + d.path
	case errors.Is(errno, unix.ENODEV), errors.Is(errno, unix.ENXIO):
		hint = fmt.Sprintf("the device node exists but no driver serves it: the %s module is not loaded, "+
			"or this is not a Xen domain (the module refuses to load outside Xen; try: modprobe %s)", d.module, d.module)
	default:
		return pe
	}
	return fmt.Errorf("%w: %s", pe, hint)
}

// readLimit returns the current value of a module's limit parameter, or ""
// if it cannot be read.
func readLimit(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// raiseHint says how to raise a module's limit parameter. cur is its current
// value ("" if unknown) and need the number of grants the failed call asked
// for.
func raiseHint(param, cur string, need int) string {
	n, err := strconv.Atoi(cur)
	if err != nil || n < 0 {
		return fmt.Sprintf("raise it as root with: echo N > %s (N larger than the current value)", param)
	}
	want := 2 * n
	if want < n+need {
		want = n + need
	}
	return fmt.Sprintf("its current value is %d; raise it as root with: echo %d > %s", n, want, param)
}

// allocNoSpaceError explains ENOSPC from IOCTL_GNTALLOC_ALLOC_GREF: the
// driver's global grant limit (docs/PROTOCOL.md §10), which also counts pages
// that were released here but are still mapped by another domain. cur is
// the limit's current value, "" if unknown.
func allocNoSpaceError(peer uint16, count int, errno error, cur string) error {
	return fmt.Errorf("gntalloc: share %d pages with domain %d: %w: %w: gntalloc allows a fixed number of grants "+
		"at once in this domain, counting pages a peer still maps after they were released here "+
		"(%s); %s; if the limit is not the cause, the domain's grant table is full "+
		"(raise gnttab_max_frames in its Xen configuration)",
		count, peer, errno, ErrNoSpace, gntallocDev.limit, raiseHint(gntallocDev.limit, cur, count))
}

// mapLimitError explains a refused IOCTL_GNTDEV_MAP_GRANT_REF with a valid
// count: recent drivers limit the pages of one request (EINVAL), older ones
// the pages mapped in total (ENOMEM); both through the limit parameter. cur
// is its current value, "" if unknown.
func mapLimitError(peer uint16, count int, errno error, cur string) error {
	return fmt.Errorf("gntdev: map %d pages from domain %d: %w: %w: gntdev limits the pages one request "+
		"(recent kernels) or all mappings (older kernels) may map (%s); %s",
		count, peer, errno, ErrNoSpace, gntdevDev.limit, raiseHint(gntdevDev.limit, cur, count))
}

// badRefError explains a failed mmap of granted pages: Xen refused at least
// one grant.
func badRefError(peer uint16, refs []Ref, errno error) error {
	return fmt.Errorf("gntdev: map grant references %s from domain %d: %w: %w: a reference is not granted to this "+
		"domain by domain %d, was already revoked, or is granted read-only and was mapped writable",
		fmtRefs(refs), peer, errno, ErrBadRef, peer)
}

// fmtRefs lists grant references for an error message, abbreviated when
// there are many.
func fmtRefs(refs []Ref) string {
	const show = 8
	if len(refs) <= show {
		return fmt.Sprint(refs)
	}
	return fmt.Sprintf("%v (and %d more)", refs[:show], len(refs)-show)
}

// notifyError explains a failed SET_UNMAP_NOTIFY.
func notifyError(dev string, n *UnmapNotify, errno error) error {
	hint := ""
	if errors.Is(errno, unix.EINVAL) && n.SendEvent {
		hint = fmt.Sprintf(": event channel port %d must be bound through /dev/xen/evtchn in this domain", n.Port)
	}
	return fmt.Errorf("%s: set unmap notify (offset %d, clear byte %t, event %t, port %d): %w%s",
		dev, n.Offset, n.ClearByte, n.SendEvent, n.Port, errno, hint)
}

// checkCount validates a page count.
func checkCount(dev string, count int) error {
	if count < 1 || count > maxPages {
		return fmt.Errorf("%s: %d pages requested: the count must be between 1 and %d", dev, count, maxPages)
	}
	return nil
}

// notifyAction validates an unmap notification for a mapping of size bytes
// and returns the kernel's action bits (0: nothing to register).
func notifyAction(dev string, n *UnmapNotify, size int) (uint32, error) {
	if n == nil {
		return 0, nil
	}
	var action uint32
	if n.ClearByte {
		action |= unmapNotifyClearByte
	}
	if n.SendEvent {
		action |= unmapNotifySendEvent
	}
	if action != 0 && (n.Offset < 0 || n.Offset >= size) {
		return 0, fmt.Errorf("%s: unmap notify offset %d is outside the %d-byte mapping", dev, n.Offset, size)
	}
	return action, nil
}

// mmapOffset converts the driver's mmap index, a byte offset, to mmap's
// argument type.
func mmapOffset(dev string, index uint64) (int64, error) {
	if index > math.MaxInt64 || index%PageSize != 0 {
		return 0, fmt.Errorf("%s: the driver returned an unusable mmap index %#x", dev, index)
	}
	return int64(index), nil
}

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

// errClosedHandle is returned by Share and Map after Close.
var errClosedHandle = errors.New("gnt: use of closed grant device handle")

// errClosedRegion is returned by a second Region.Close.
var errClosedRegion = errors.New("gnt: region already closed")

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
	fd, err := openDev(gntallocDev)
	if err != nil {
		return nil, err
	}
	return &sharer{fd: fd}, nil
}

// Share allocates count zeroed pages, grants them writable to peer, and maps
// them here.
func (s *sharer) Share(peer uint16, count int, notify *UnmapNotify) (SharedRegion, error) {
	if err := checkCount("gntalloc", count); err != nil {
		return nil, err
	}
	size := count * PageSize
	action, err := notifyAction("gntalloc", notify, size)
	if err != nil {
		return nil, err
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosedHandle
	}

	p := allocGrefArg(peer, count)
	if err := ioctl(s.fd, ioctlGntallocAllocGref, p); err != nil {
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
		if err := ioctl(s.fd, ioctlGntallocDeallocGref, unsafe.Pointer(&d)); err != nil {
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
		// The index names the byte: mmap offset plus its offset in the
		// mapping; the driver splits it into page and byte (docs/PROTOCOL.md §5).
		n := unmapNotifyArg{Index: index + uint64(notify.Offset), Action: action, Port: notify.Port}
		if err := ioctl(s.fd, ioctlGntallocSetUnmapNotify, unsafe.Pointer(&n)); err != nil {
			err = notifyError("gntalloc", notify, err)
			return nil, errors.Join(err, unix.Munmap(mem), dealloc())
		}
	}

	if err := dealloc(); err != nil {
		// Should not happen (the index was just allocated). The pages would
		// stay tied to this handle until it is closed; give them back now.
		return nil, errors.Join(err, unix.Munmap(mem))
	}
	return &sharedRegion{mem: mem, refs: refs}, nil
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
	mu   sync.Mutex
	mem  []byte
	refs []Ref
}

// Bytes is the mapped memory; nil after Close.
func (r *sharedRegion) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem
}

// Refs returns the pages' grant references, in page order.
func (r *sharedRegion) Refs() []Ref {
	return append([]Ref(nil), r.refs...)
}

// Close unmaps the pages. The kernel then fires the unmap notification and
// ends the grants; pages the peer still maps are freed when it lets go.
func (r *sharedRegion) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem == nil {
		return errClosedRegion
	}
	mem := r.mem
	r.mem = nil
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("gntalloc: munmap: %w", err)
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
	fd, err := openDev(gntdevDev)
	if err != nil {
		return nil, err
	}
	return &mapper{dev: newFdRef(fd)}, nil
}

// Map maps the pages named by refs, granted by peer, into one region.
func (m *mapper) Map(peer uint16, refs []Ref, writable bool, notify *UnmapNotify) (Region, error) {
	count := len(refs)
	if err := checkCount("gntdev", count); err != nil {
		return nil, err
	}
	size := count * PageSize
	action, err := notifyAction("gntdev", notify, size)
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

	unmapSlot := func(index uint64) error {
		u := gntdevUnmapGrantRef{Index: index, Count: uint32(count)}
		if err := ioctl(fd, ioctlGntdevUnmapGrantRef, unsafe.Pointer(&u)); err != nil {
			return fmt.Errorf("gntdev: ioctl UNMAP_GRANT_REF (index %#x, %d pages): %w", index, count, err)
		}
		return nil
	}

	var (
		mem   []byte
		index uint64
	)
	for attempt := 1; ; attempt++ {
		arg.Count = uint32(count)
		arg.Index = 0
		if err := ioctl(fd, ioctlGntdevMapGrantRef, p); err != nil {
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
			return nil, errors.Join(err, unmapSlot(index))
		}
		// mmap is where Xen maps the grants. EAGAIN means a granted page
		// is paged out; libxengnttab retries the mmap every 1 ms. Recent
		// drivers mark a slot used by its first mmap even when it fails, so
		// start over with a fresh slot instead.
		mem, err = unix.Mmap(fd, off, size, prot, unix.MAP_SHARED)
		if err == nil {
			break
		}
		uerr := unmapSlot(index)
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
		n := unmapNotifyArg{Index: index + uint64(notify.Offset), Action: action, Port: notify.Port}
		if err := ioctl(fd, ioctlGntdevSetUnmapNotify, unsafe.Pointer(&n)); err != nil {
			err = notifyError("gntdev", notify, err)
			return nil, errors.Join(err, unix.Munmap(mem), unmapSlot(index))
		}
	}

	m.dev.acquire()
	return &mappedRegion{mem: mem, index: index, count: count, dev: m.dev}, nil
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
	mu    sync.Mutex
	mem   []byte
	index uint64
	count int
	dev   *fdRef
}

// Bytes is the mapped memory; nil after Close.
func (r *mappedRegion) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem
}

// Close unmaps the pages (the kernel then runs the unmap notification) and
// frees the driver's slot, as libxengnttab's unmap does: munmap, then
// UNMAP_GRANT_REF.
func (r *mappedRegion) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem == nil {
		return errClosedRegion
	}
	mem := r.mem
	r.mem = nil
	var errs []error
	if err := unix.Munmap(mem); err != nil {
		errs = append(errs, fmt.Errorf("gntdev: munmap: %w", err))
	}
	u := gntdevUnmapGrantRef{Index: r.index, Count: uint32(r.count)}
	if err := ioctl(r.dev.fd, ioctlGntdevUnmapGrantRef, unsafe.Pointer(&u)); err != nil {
		errs = append(errs, fmt.Errorf("gntdev: ioctl UNMAP_GRANT_REF (index %#x, %d pages): %w", r.index, r.count, err))
	}
	if err := r.dev.release(); err != nil {
		errs = append(errs, fmt.Errorf("gntdev: close: %w", err))
	}
	return errors.Join(errs...)
}
