//go:build linux

package evtchn

import (
	"testing"
	"unsafe"

	"github.com/vchan-go/vchan/internal/xenlayout"
)

// TestLayoutMatchesHeaders proves the ioctl numbers and argument layouts the
// device code uses against <xen/evtchn.h>, compiled with gcc.
func TestLayoutMatchesHeaders(t *testing.T) {
	var (
		inter   bindInterdomainArg
		unbound bindUnboundPortArg
		unbind  unbindArg
		notify  notifyArg
	)
	u := func(v uintptr) uint64 { return uint64(v) }
	xenlayout.Compare(t, []string{"xen/evtchn.h"}, []xenlayout.Check{
		{Name: "IOCTL_EVTCHN_BIND_INTERDOMAIN", C: "IOCTL_EVTCHN_BIND_INTERDOMAIN", Go: u(ioctlBindInterdomain)},
		{Name: "IOCTL_EVTCHN_BIND_UNBOUND_PORT", C: "IOCTL_EVTCHN_BIND_UNBOUND_PORT", Go: u(ioctlBindUnboundPort)},
		{Name: "IOCTL_EVTCHN_UNBIND", C: "IOCTL_EVTCHN_UNBIND", Go: u(ioctlUnbind)},
		{Name: "IOCTL_EVTCHN_NOTIFY", C: "IOCTL_EVTCHN_NOTIFY", Go: u(ioctlNotify)},
		{Name: "IOCTL_EVTCHN_RESET", C: "IOCTL_EVTCHN_RESET", Go: u(ioctlReset)},

		{Name: "sizeof(bind_interdomain)", C: "sizeof(struct ioctl_evtchn_bind_interdomain)", Go: u(unsafe.Sizeof(inter))},
		{Name: "bind_interdomain.remote_domain", C: "offsetof(struct ioctl_evtchn_bind_interdomain, remote_domain)", Go: u(unsafe.Offsetof(inter.RemoteDomain))},
		{Name: "bind_interdomain.remote_port", C: "offsetof(struct ioctl_evtchn_bind_interdomain, remote_port)", Go: u(unsafe.Offsetof(inter.RemotePort))},
		{Name: "sizeof(bind_unbound_port)", C: "sizeof(struct ioctl_evtchn_bind_unbound_port)", Go: u(unsafe.Sizeof(unbound))},
		{Name: "bind_unbound_port.remote_domain", C: "offsetof(struct ioctl_evtchn_bind_unbound_port, remote_domain)", Go: u(unsafe.Offsetof(unbound.RemoteDomain))},
		{Name: "sizeof(unbind)", C: "sizeof(struct ioctl_evtchn_unbind)", Go: u(unsafe.Sizeof(unbind))},
		{Name: "unbind.port", C: "offsetof(struct ioctl_evtchn_unbind, port)", Go: u(unsafe.Offsetof(unbind.Port))},
		{Name: "sizeof(notify)", C: "sizeof(struct ioctl_evtchn_notify)", Go: u(unsafe.Sizeof(notify))},
		{Name: "notify.port", C: "offsetof(struct ioctl_evtchn_notify, port)", Go: u(unsafe.Offsetof(notify.Port))},
		// A pending port as read() returns it and write() takes it back is
		// an evtchn_port_t, a u32 (docs/PROTOCOL.md §12); the argument structs
		// hold ports as unsigned int.
		{Name: "sizeof(unsigned_int)", C: "sizeof(unsigned int)", Go: 4},
	})
}
