//go:build linux

package gnt

import (
	"testing"
	"unsafe"

	"github.com/vchan-go/vchan/internal/xenlayout"
)

// TestLayoutMatchesHeaders proves every ioctl number, struct size and field
// offset the gntalloc and gntdev code uses against <xen/gntalloc.h> and
// <xen/gntdev.h>, compiled with gcc.
func TestLayoutMatchesHeaders(t *testing.T) {
	var (
		alloc   gntallocAllocGref
		dealloc gntallocDeallocGref
		notify  unmapNotifyArg
		gref    gntdevGrantRef
		mapRef  gntdevMapGrantRef
		unmap   gntdevUnmapGrantRef
	)
	u := func(v uintptr) uint64 { return uint64(v) }
	xenlayout.Compare(t, []string{"xen/gntalloc.h", "xen/gntdev.h"}, []xenlayout.Check{
		{Name: "IOCTL_GNTALLOC_ALLOC_GREF", C: "IOCTL_GNTALLOC_ALLOC_GREF", Go: u(ioctlGntallocAllocGref)},
		{Name: "IOCTL_GNTALLOC_DEALLOC_GREF", C: "IOCTL_GNTALLOC_DEALLOC_GREF", Go: u(ioctlGntallocDeallocGref)},
		{Name: "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY", C: "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY", Go: u(ioctlGntallocSetUnmapNotify)},
		{Name: "GNTALLOC_FLAG_WRITABLE", C: "GNTALLOC_FLAG_WRITABLE", Go: gntallocFlagWritable},
		{Name: "UNMAP_NOTIFY_CLEAR_BYTE", C: "UNMAP_NOTIFY_CLEAR_BYTE", Go: unmapNotifyClearByte},
		{Name: "UNMAP_NOTIFY_SEND_EVENT", C: "UNMAP_NOTIFY_SEND_EVENT", Go: unmapNotifySendEvent},

		{Name: "sizeof(alloc_gref)", C: "sizeof(struct ioctl_gntalloc_alloc_gref)", Go: u(unsafe.Sizeof(alloc))},
		{Name: "alloc_gref.domid", C: "offsetof(struct ioctl_gntalloc_alloc_gref, domid)", Go: u(unsafe.Offsetof(alloc.Domid))},
		{Name: "alloc_gref.flags", C: "offsetof(struct ioctl_gntalloc_alloc_gref, flags)", Go: u(unsafe.Offsetof(alloc.Flags))},
		{Name: "alloc_gref.count", C: "offsetof(struct ioctl_gntalloc_alloc_gref, count)", Go: u(unsafe.Offsetof(alloc.Count))},
		{Name: "alloc_gref.index", C: "offsetof(struct ioctl_gntalloc_alloc_gref, index)", Go: u(unsafe.Offsetof(alloc.Index))},
		{Name: "alloc_gref.gref_ids", C: "offsetof(struct ioctl_gntalloc_alloc_gref, gref_ids)", Go: u(unsafe.Offsetof(alloc.GrefIDs))},
		{Name: "sizeof(alloc_gref.gref_ids[0])", C: "sizeof(((struct ioctl_gntalloc_alloc_gref *)0)->gref_ids[0])", Go: u(unsafe.Sizeof(alloc.GrefIDs[0]))},
		{Name: "sizeof(alloc_gref.domid)", C: "sizeof(((struct ioctl_gntalloc_alloc_gref *)0)->domid)", Go: u(unsafe.Sizeof(alloc.Domid))},
		{Name: "sizeof(alloc_gref.index)", C: "sizeof(((struct ioctl_gntalloc_alloc_gref *)0)->index)", Go: u(unsafe.Sizeof(alloc.Index))},

		{Name: "sizeof(dealloc_gref)", C: "sizeof(struct ioctl_gntalloc_dealloc_gref)", Go: u(unsafe.Sizeof(dealloc))},
		{Name: "dealloc_gref.index", C: "offsetof(struct ioctl_gntalloc_dealloc_gref, index)", Go: u(unsafe.Offsetof(dealloc.Index))},
		{Name: "dealloc_gref.count", C: "offsetof(struct ioctl_gntalloc_dealloc_gref, count)", Go: u(unsafe.Offsetof(dealloc.Count))},

		{Name: "sizeof(gntalloc_unmap_notify)", C: "sizeof(struct ioctl_gntalloc_unmap_notify)", Go: u(unsafe.Sizeof(notify))},
		{Name: "gntalloc_unmap_notify.index", C: "offsetof(struct ioctl_gntalloc_unmap_notify, index)", Go: u(unsafe.Offsetof(notify.Index))},
		{Name: "gntalloc_unmap_notify.action", C: "offsetof(struct ioctl_gntalloc_unmap_notify, action)", Go: u(unsafe.Offsetof(notify.Action))},
		{Name: "gntalloc_unmap_notify.event_channel_port", C: "offsetof(struct ioctl_gntalloc_unmap_notify, event_channel_port)", Go: u(unsafe.Offsetof(notify.Port))},

		{Name: "IOCTL_GNTDEV_MAP_GRANT_REF", C: "IOCTL_GNTDEV_MAP_GRANT_REF", Go: u(ioctlGntdevMapGrantRef)},
		{Name: "IOCTL_GNTDEV_UNMAP_GRANT_REF", C: "IOCTL_GNTDEV_UNMAP_GRANT_REF", Go: u(ioctlGntdevUnmapGrantRef)},
		{Name: "IOCTL_GNTDEV_SET_UNMAP_NOTIFY", C: "IOCTL_GNTDEV_SET_UNMAP_NOTIFY", Go: u(ioctlGntdevSetUnmapNotify)},

		{Name: "sizeof(gntdev_grant_ref)", C: "sizeof(struct ioctl_gntdev_grant_ref)", Go: u(unsafe.Sizeof(gref))},
		{Name: "gntdev_grant_ref.domid", C: "offsetof(struct ioctl_gntdev_grant_ref, domid)", Go: u(unsafe.Offsetof(gref.Domid))},
		{Name: "gntdev_grant_ref.ref", C: "offsetof(struct ioctl_gntdev_grant_ref, ref)", Go: u(unsafe.Offsetof(gref.Ref))},

		{Name: "sizeof(map_grant_ref)", C: "sizeof(struct ioctl_gntdev_map_grant_ref)", Go: u(unsafe.Sizeof(mapRef))},
		{Name: "map_grant_ref.count", C: "offsetof(struct ioctl_gntdev_map_grant_ref, count)", Go: u(unsafe.Offsetof(mapRef.Count))},
		{Name: "map_grant_ref.pad", C: "offsetof(struct ioctl_gntdev_map_grant_ref, pad)", Go: u(unsafe.Offsetof(mapRef.Pad))},
		{Name: "map_grant_ref.index", C: "offsetof(struct ioctl_gntdev_map_grant_ref, index)", Go: u(unsafe.Offsetof(mapRef.Index))},
		{Name: "map_grant_ref.refs", C: "offsetof(struct ioctl_gntdev_map_grant_ref, refs)", Go: u(unsafe.Offsetof(mapRef.Refs))},

		{Name: "sizeof(unmap_grant_ref)", C: "sizeof(struct ioctl_gntdev_unmap_grant_ref)", Go: u(unsafe.Sizeof(unmap))},
		{Name: "unmap_grant_ref.index", C: "offsetof(struct ioctl_gntdev_unmap_grant_ref, index)", Go: u(unsafe.Offsetof(unmap.Index))},
		{Name: "unmap_grant_ref.count", C: "offsetof(struct ioctl_gntdev_unmap_grant_ref, count)", Go: u(unsafe.Offsetof(unmap.Count))},
		{Name: "unmap_grant_ref.pad", C: "offsetof(struct ioctl_gntdev_unmap_grant_ref, pad)", Go: u(unsafe.Offsetof(unmap.Pad))},

		{Name: "sizeof(gntdev_unmap_notify)", C: "sizeof(struct ioctl_gntdev_unmap_notify)", Go: u(unsafe.Sizeof(notify))},
		{Name: "gntdev_unmap_notify.index", C: "offsetof(struct ioctl_gntdev_unmap_notify, index)", Go: u(unsafe.Offsetof(notify.Index))},
		{Name: "gntdev_unmap_notify.action", C: "offsetof(struct ioctl_gntdev_unmap_notify, action)", Go: u(unsafe.Offsetof(notify.Action))},
		{Name: "gntdev_unmap_notify.event_channel_port", C: "offsetof(struct ioctl_gntdev_unmap_notify, event_channel_port)", Go: u(unsafe.Offsetof(notify.Port))},
	})
}
