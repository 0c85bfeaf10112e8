//go:build linux

package evtchn

// Whether the remote end of a port is still there, from Xen itself
// (docs/PROTOCOL.md §12.1): EVTCHNOP_status through /dev/xen/privcmd's
// hypercall ioctl. When a domain is destroyed, Xen closes its ports, and the
// other end of each of its interdomain channels becomes unbound, without an
// event. A domain that may not read the peer's xenstore home (any domU) has
// no other way to learn that its peer is gone.

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/xendev"
)

var privcmdDev = xendev.Device{Path: "/dev/xen/privcmd", Module: "xen-privcmd"}

// Hypercall numbers and values, docs/PROTOCOL.md §12.1.
const (
	hypervisorEventChannelOp = 32     // __HYPERVISOR_event_channel_op
	evtchnOpStatus           = 5      // EVTCHNOP_status
	domidSelf                = 0x7FF0 // DOMID_SELF
	evtchnStatInterdomain    = 2      // EVTCHNSTAT_interdomain
)

// privcmdHypercall is struct privcmd_hypercall.
type privcmdHypercall struct {
	Op  uint64
	Arg [5]uint64
}

// IOCTL_PRIVCMD_HYPERCALL = 0x00305000.
var ioctlPrivcmdHypercall = xendev.IOCNone('P', 0, unsafe.Sizeof(privcmdHypercall{}))

// evtchnStatus is struct evtchn_status: dom and port in, the rest out.
type evtchnStatus struct {
	Dom    uint16
	_      uint16
	Port   uint32
	Status uint32
	VCPU   uint32
	U      [8]byte // the union: unbound.dom, or interdomain.dom and .port
}

// errStatusUnavailable: this kernel or domain does not let us ask.
var errStatusUnavailable = errors.New("event channel status unavailable")

// statusQuery asks Xen for the state of a local port. It is process-wide:
// one privcmd handle and one locked page, opened at the first query. If the
// device is missing or the hypercall is refused (a domU kernel that locks
// privcmd down), every later query fails at once with errStatusUnavailable,
// and callers rely on deadlines and xenstore instead.
type statusQuery struct {
	once sync.Once
	mu   sync.Mutex
	fd   int
	page []byte // the hypercall's argument: locked, so Xen never faults on it
	off  error  // why queries are off; nil while they work
}

var status statusQuery

func (s *statusQuery) open() {
	fd, err := xendev.Open(privcmdDev, 0)
	if err != nil {
		s.off = fmt.Errorf("%w: %v", errStatusUnavailable, err)
		return
	}
	page, err := unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_LOCKED)
	if err != nil {
		unix.Close(fd)
		s.off = fmt.Errorf("%w: a locked page for the hypercall: %v", errStatusUnavailable, err)
		return
	}
	s.fd, s.page = fd, page
}

// StatusCheck reports whether this process may ask Xen for the status of
// its event channel ports: nil if it may, else why not (no privcmd device,
// or the kernel refuses the hypercall). Without it, a domU notices a
// destroyed peer domain only through deadlines. It asks about port 0,
// which every domain has (reserved, reported closed).
func StatusCheck() error {
	_, err := status.interdomain(0, xendev.Ioctl)
	return err
}

// realPortStatus is sysCalls.portStatus on a real system.
func realPortStatus(port Port) (bool, error) { return status.interdomain(port, xendev.Ioctl) }

// interdomain reports whether local port is bound to a remote domain's
// port. It returns errStatusUnavailable (wrapped) when Xen cannot be asked.
func (s *statusQuery) interdomain(port Port, ioctl func(fd int, req uintptr, arg unsafe.Pointer) (int, error)) (bool, error) {
	s.once.Do(s.open)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off != nil {
		return false, s.off
	}
	st := (*evtchnStatus)(unsafe.Pointer(&s.page[0]))
	*st = evtchnStatus{Dom: domidSelf, Port: uint32(port)}
	call := privcmdHypercall{Op: hypervisorEventChannelOp, Arg: [5]uint64{evtchnOpStatus, uint64(uintptr(unsafe.Pointer(st)))}}
	if _, err := ioctl(s.fd, ioctlPrivcmdHypercall, unsafe.Pointer(&call)); err != nil {
		// EPERM/EACCES: a locked-down privcmd or an XSM policy; ENOTTY,
		// ENOSYS: no such call here. None of them changes later, and a
		// port of ours that Xen does not know (EINVAL) is a bug, not a
		// peer's death: stop asking either way.
		s.off = fmt.Errorf("%w: EVTCHNOP_status of port %d: %v", errStatusUnavailable, port, err)
		return false, s.off
	}
	return st.Status == evtchnStatInterdomain, nil
}
