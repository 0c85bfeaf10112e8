//go:build linux

package gnt

// The ioctl ABI of the real grant devices: /dev/xen/gntalloc to share pages
// (docs/PROTOCOL.md §10) and /dev/xen/gntdev to map pages another domain
// shared (docs/PROTOCOL.md §11). The structs mirror the Linux uapi headers
// <xen/gntalloc.h> and <xen/gntdev.h> field for field, and
// layout_linux_test.go checks them against the headers with gcc.

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/vchan-go/vchan/internal/xendev"
)

// maxPages is the largest number of pages one Share or Map accepts. A vchan
// needs at most 257 (one shared page plus 256 ring pages, docs/PROTOCOL.md §1.3);
// 1<<16 is also the default per-request limit of recent gntdev drivers.
const maxPages = 1 << 16

// ioctl request numbers, _IOC(_IOC_NONE, 'G', nr, sizeof(struct)). The size
// is the C struct's, flexible one-element array included, so it differs on
// 386 exactly where C's does. On amd64 and arm64 the values are the ones in
// docs/PROTOCOL.md §10 and §11.
var (
	// IOCTL_GNTALLOC_ALLOC_GREF = 0x00184705 on amd64.
	ioctlGntallocAllocGref = xendev.IOCNone('G', 5, unsafe.Sizeof(gntallocAllocGref{}))
	// IOCTL_GNTALLOC_DEALLOC_GREF = 0x00104706 on amd64.
	ioctlGntallocDeallocGref = xendev.IOCNone('G', 6, unsafe.Sizeof(gntallocDeallocGref{}))
	// IOCTL_GNTALLOC_SET_UNMAP_NOTIFY = 0x00104707 on amd64.
	ioctlGntallocSetUnmapNotify = xendev.IOCNone('G', 7, unsafe.Sizeof(unmapNotifyArg{}))

	// IOCTL_GNTDEV_MAP_GRANT_REF = 0x00184700 on amd64.
	ioctlGntdevMapGrantRef = xendev.IOCNone('G', 0, unsafe.Sizeof(gntdevMapGrantRef{}))
	// IOCTL_GNTDEV_UNMAP_GRANT_REF = 0x00104701 on amd64.
	ioctlGntdevUnmapGrantRef = xendev.IOCNone('G', 1, unsafe.Sizeof(gntdevUnmapGrantRef{}))
	// IOCTL_GNTDEV_SET_UNMAP_NOTIFY = 0x00104707 on amd64, the same number
	// as gntalloc's (the structs are identical).
	ioctlGntdevSetUnmapNotify = xendev.IOCNone('G', 7, unsafe.Sizeof(unmapNotifyArg{}))
)

const (
	// GNTALLOC_FLAG_WRITABLE.
	gntallocFlagWritable = 1
	// UNMAP_NOTIFY_CLEAR_BYTE and UNMAP_NOTIFY_SEND_EVENT (both headers).
	unmapNotifyClearByte = 0x1
	unmapNotifySendEvent = 0x2
)

// gntallocAllocGref is struct ioctl_gntalloc_alloc_gref. The kernel writes
// Count grant references starting at GrefIDs, so the argument passed is a
// larger buffer that starts with this struct (allocGrefArg).
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
// Count entries starting at Refs (mapGrantRefArg).
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

// checkRequest validates the page count and the unmap notification of a
// Share or Map, and returns the mapping's size in bytes and the kernel's
// notification action bits (0: nothing to register).
func checkRequest(dev string, count int, n *UnmapNotify) (size int, action uint32, err error) {
	if count < 1 || count > maxPages {
		return 0, 0, fmt.Errorf("%s: %d pages requested: the count must be between 1 and %d", dev, count, maxPages)
	}
	size = count * PageSize
	if n == nil {
		return size, 0, nil
	}
	if n.ClearByte {
		action |= unmapNotifyClearByte
	}
	if n.SendEvent {
		action |= unmapNotifySendEvent
	}
	if action != 0 && (n.Offset < 0 || n.Offset >= size) {
		return 0, 0, fmt.Errorf("%s: unmap notify offset %d is outside the %d-byte mapping", dev, n.Offset, size)
	}
	return size, action, nil
}

// setUnmapNotify registers the notification for the mapping at the driver's
// mmap index (SET_UNMAP_NOTIFY of either device, req). The argument names
// the byte: mmap offset plus its offset in the mapping; the driver splits it
// into page and byte (docs/PROTOCOL.md §5).
func setUnmapNotify(fd int, req uintptr, dev string, index uint64, n *UnmapNotify, action uint32) error {
	arg := unmapNotifyArg{Index: index + uint64(n.Offset), Action: action, Port: n.Port}
	if _, err := xendev.Ioctl(fd, req, unsafe.Pointer(&arg)); err != nil {
		return notifyError(dev, n, err)
	}
	return nil
}

// mmapOffset converts the driver's mmap index, a byte offset, to mmap's
// argument type.
func mmapOffset(dev string, index uint64) (int64, error) {
	if index > math.MaxInt64 || index%PageSize != 0 {
		return 0, fmt.Errorf("%s: the driver returned an unusable mmap index %#x", dev, index)
	}
	return int64(index), nil
}
