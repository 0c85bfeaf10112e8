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

// TestStatusLayoutMatchesHeaders proves the privcmd hypercall ioctl, the
// numbers of EVTCHNOP_status and struct evtchn_status against the headers
// of Debian's libxen-dev (<xen/sys/privcmd.h>, as libxencall uses it, and
// the hypervisor's <xen/xen.h> and <xen/event_channel.h>). Linux's own
// <xen/privcmd.h> does not compile outside the kernel tree.
func TestStatusLayoutMatchesHeaders(t *testing.T) {
	xenlayout.UseInteropHeaders(t, "xen/event_channel.h")
	var (
		call privcmdHypercall
		st   evtchnStatus
	)
	u := func(v uintptr) uint64 { return uint64(v) }
	// Without an interface version the headers give the numbers of Xen 3.0's
	// compatibility calls (event_channel_op_compat, 16); the kernel and
	// libxencall use the current ones.
	xenlayout.Compare(t, []string{"#define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__",
		"xen/xen.h", "xen/event_channel.h", "xen/sys/privcmd.h"}, []xenlayout.Check{
		{Name: "IOCTL_PRIVCMD_HYPERCALL", C: "IOCTL_PRIVCMD_HYPERCALL", Go: u(ioctlPrivcmdHypercall)},
		{Name: "sizeof(privcmd_hypercall)", C: "sizeof(struct privcmd_hypercall)", Go: u(unsafe.Sizeof(call))},
		{Name: "privcmd_hypercall.op", C: "offsetof(struct privcmd_hypercall, op)", Go: u(unsafe.Offsetof(call.Op))},
		{Name: "privcmd_hypercall.arg", C: "offsetof(struct privcmd_hypercall, arg)", Go: u(unsafe.Offsetof(call.Arg))},

		{Name: "__HYPERVISOR_event_channel_op", C: "__HYPERVISOR_event_channel_op", Go: hypervisorEventChannelOp},
		{Name: "EVTCHNOP_status", C: "EVTCHNOP_status", Go: evtchnOpStatus},
		{Name: "DOMID_SELF", C: "DOMID_SELF", Go: domidSelf},
		{Name: "EVTCHNSTAT_interdomain", C: "EVTCHNSTAT_interdomain", Go: evtchnStatInterdomain},
		{Name: "sizeof(evtchn_status)", C: "sizeof(struct evtchn_status)", Go: u(unsafe.Sizeof(st))},
		{Name: "evtchn_status.dom", C: "offsetof(struct evtchn_status, dom)", Go: u(unsafe.Offsetof(st.Dom))},
		{Name: "evtchn_status.port", C: "offsetof(struct evtchn_status, port)", Go: u(unsafe.Offsetof(st.Port))},
		{Name: "evtchn_status.status", C: "offsetof(struct evtchn_status, status)", Go: u(unsafe.Offsetof(st.Status))},
		{Name: "evtchn_status.vcpu", C: "offsetof(struct evtchn_status, vcpu)", Go: u(unsafe.Offsetof(st.VCPU))},
		{Name: "evtchn_status.u", C: "offsetof(struct evtchn_status, u)", Go: u(unsafe.Offsetof(st.U))},
		{Name: "sizeof(evtchn_status.u)", C: "sizeof(((struct evtchn_status *)0)->u)", Go: u(unsafe.Sizeof(st.U))},
	})
}
