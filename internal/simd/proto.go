// Package simd is a simulated Xen host that separate processes share: the
// daemon logic behind cmd/vchan-simd, and the client side a process uses to
// join the simulator as one domain.
//
// The daemon plays hypervisor and xenstored. It owns the grant tables (pages
// are memfds), the event channels (an evtsim.Switch) and the xenstore (a
// xssim.Store served by xsserver). It needs Linux; elsewhere Start and
// Connect fail and say so (simd_other.go). All its state lives in one
// directory:
//
//	DIR/lock              flock'ed by the running daemon
//	DIR/pid               its process id
//	DIR/control           the control socket (SOCK_SEQPACKET)
//	DIR/dom<N>/xenstored  xenstored socket of domain N: a connection on it IS domain N
//
// # Control protocol
//
// A process connects to DIR/control (SOCK_SEQPACKET, so every message keeps
// its boundaries and may carry file descriptors) and sends requests, one at a
// time; the daemon answers each with exactly one reply. Every field is a
// native-endian uint32 (both ends run on the same host):
//
//	request:  op, args...
//	reply:    status, results...        (status 0: success)
//	          status, message bytes     (status != 0: what failed, in words)
//
// The first request must be hello; the connection is then domain domid until
// it closes, and the domain lives (its xenstore home, its socket) as long as
// it has a control connection (dom0 lives as long as the daemon).
//
//	op                       args                                  results                          fds in reply
//	1 hello                  version, domid                        version                          event socket
//	2 share                  peer, count, nflags, noffset, nport   region, ref × count              memfd (read-write)
//	3 map                    peer, writable, nflags, noffset,      region, nseg,                    one per distinct memfd
//	                         nport, ref...                         (fdindex, firstpage, npages) × nseg
//	4 unmap                  region                                -
//	5 bind_unbound           remote                                port
//	6 bind_interdomain       remote, remote_port                   port
//	7 notify                 port                                  -
//	8 unbind                 port                                  -
//	9 notify_async           port                                  (no reply)
//
// notify_async is notify without a reply: the daemon sends no message back,
// whatever happens, and a notify on a port the connection has not bound is
// dropped (logged with -v). Requests on one connection are handled in
// order, so a later request sees its effect. It makes an event channel
// notify one write(2) for the process instead of a round trip that waits
// for the daemon to be scheduled; the Go client and the C shim send every
// notify this way (libxenvchan ignores xenevtchn_notify's result). Version
// 2 of the protocol added it.
//
// nflags holds the unmap notification, with the bits of the Linux uapi
// (UNMAP_NOTIFY_CLEAR_BYTE 1, UNMAP_NOTIFY_SEND_EVENT 2). Status codes: 1
// EINVAL, 2 grant limit (gnt.ErrNoSpace), 3 bad grant reference
// (gnt.ErrBadRef), 4 port not bindable (evtchn.ErrNotBindable), 5 closed
// (evtchn.ErrClosed), 6 other failure.
//
// The process maps the memfds itself (MAP_SHARED). For a read-only map the
// daemon hands out a read-only descriptor of the memfd (reopened through
// /proc/self/fd), so PROT_WRITE with MAP_SHARED, and a later mprotect to
// PROT_WRITE, fail. A process could still reopen that descriptor read-write
// through its own /proc/self/fd: the simulator guards against mistakes, not
// against a hostile process. unmap tells the daemon the process has
// unmapped a region.
//
// # Events
//
// The hello reply carries one end of a SOCK_SEQPACKET socketpair: the
// event socket. It behaves like /dev/xen/evtchn: the daemon writes the
// number of a port with a pending event as one native-endian uint32, and
// then masks the port: it writes that port again only after the process has
// written the same uint32 back (unmask). Events that arrive meanwhile
// coalesce into the pending one. So the process side waits as on the real
// device: a non-blocking descriptor in Go's poller. The Go client binds each
// port through a connection of its own, as libxenvchan opens a device
// handle per connection, so the goroutine that waits for a port reads its
// event socket itself.
//
// # Unmap notifications and death
//
// The daemon maps every memfd it hands out. When a region with an unmap
// notification is unmapped (unmap request), or its process dies (its
// control connection closes), the daemon clears the byte with an atomic AND
// on the aligned 32-bit word and sends the event on the port held for it,
// exactly as gntalloc and gntdev do on munmap or process exit (docs/PROTOCOL.md
// §5). Then it closes the connection's ports. When the last connection of a
// domain other than dom0 closes, the domain is released: its xenstore home
// goes and @releaseDomain fires.
package simd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
)

// protoVersion is the control protocol version hello carries.
const protoVersion = 2

// Requests.
const (
	opHello uint32 = iota + 1
	opShare
	opMap
	opUnmap
	opBindUnbound
	opBindInterdomain
	opNotify
	opUnbind
	opNotifyAsync
)

var opNames = [...]string{"?", "hello", "share", "map", "unmap", "bind_unbound", "bind_interdomain", "notify", "unbind", "notify_async"}

func opName(op uint32) string {
	if int(op) < len(opNames) {
		return opNames[op]
	}
	return "op" + strconv.FormatUint(uint64(op), 10)
}

// Reply status codes.
const (
	stOK uint32 = iota
	stInval
	stNoSpace
	stBadRef
	stNotBindable
	stClosed
	stFailed
)

// Unmap notification flags, as in <xen/gntalloc.h> and <xen/gntdev.h>.
const (
	notifyClearByte = 1
	notifySendEvent = 2
)

// Limits of one request.
const (
	// MaxSharePages is the most pages one share request may ask for.
	MaxSharePages = 4096
	// MaxMapPages is the most grant references one map request may name.
	// A vchan needs at most 257.
	MaxMapPages = 4096
	// maxMapFiles is the most distinct memfds one map may span: the
	// kernel passes at most SCM_MAX_FD (253) descriptors per message.
	maxMapFiles = 253
	// maxMsg bounds a message: a map request or reply of MaxMapPages.
	maxMsg = 64 << 10
)

// DefaultGrantLimit is the number of pages one domain may have granted at
// once, the default of Linux's gntalloc `limit` parameter (docs/PROTOCOL.md §10).
const DefaultGrantLimit = 1024

// firstDomIDReserved is DOMID_FIRST_RESERVED: domain ids from here on are
// special (DOMID_SELF, DOMID_IO, ...) and name no real domain.
const firstDomIDReserved = 0x7ff0

// DirEnv is the environment variable that overrides DefaultDir.
const DirEnv = "VCHAN_SIM_DIR"

// DefaultDir returns the directory of the simulator: $VCHAN_SIM_DIR if set,
// else $XDG_RUNTIME_DIR/vchan-sim, else /tmp/vchan-sim-<uid>.
func DefaultDir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "vchan-sim")
	}
	return "/tmp/vchan-sim-" + strconv.Itoa(os.Getuid())
}

// Paths inside the directory.
func controlPath(dir string) string { return filepath.Join(dir, "control") }
func domainDir(dir string, domid uint16) string {
	return filepath.Join(dir, "dom"+strconv.Itoa(int(domid)))
}

// XenstorePath returns the xenstored socket of domain domid in dir: a
// connection on it acts as that domain (XENSTORED_PATH for the C tools).
func XenstorePath(dir string, domid uint16) string {
	return filepath.Join(domainDir(dir, domid), "xenstored")
}

// msg builds a message of native-endian uint32s.
type msg []byte

func (m msg) u32(vs ...uint32) msg {
	for _, v := range vs {
		m = binary.NativeEndian.AppendUint32(m, v)
	}
	return m
}

// parser reads native-endian uint32s from a message; a short message sets
// bad instead of panicking.
type parser struct {
	b   []byte
	bad bool
}

func (p *parser) u32() uint32 {
	if len(p.b) < 4 {
		p.bad = true
		return 0
	}
	v := binary.NativeEndian.Uint32(p.b)
	p.b = p.b[4:]
	return v
}

// left is how many whole uint32s remain.
func (p *parser) left() int { return len(p.b) / 4 }

// encodeNotify and decodeNotify carry a *gnt.UnmapNotify as (flags, offset,
// port).
func encodeNotify(n *gnt.UnmapNotify) (flags, offset, port uint32) {
	if n == nil {
		return 0, 0, 0
	}
	if n.ClearByte {
		flags |= notifyClearByte
		offset = uint32(n.Offset)
	}
	if n.SendEvent {
		flags |= notifySendEvent
		port = n.Port
	}
	return flags, offset, port
}

func decodeNotify(flags, offset, port uint32) gnt.UnmapNotify {
	return gnt.UnmapNotify{
		ClearByte: flags&notifyClearByte != 0,
		Offset:    int(int32(offset)),
		SendEvent: flags&notifySendEvent != 0,
		Port:      port,
	}
}

// statusError is a failure the daemon reports: a status code and a message.
type statusError struct {
	status uint32
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// errorf returns a *statusError.
func errorf(status uint32, format string, args ...any) *statusError {
	return &statusError{status: status, msg: fmt.Sprintf(format, args...)}
}

// sentinel is the error a status code stands for on the client side.
func sentinel(status uint32) error {
	switch status {
	case stInval:
		return syscall.EINVAL
	case stNoSpace:
		return gnt.ErrNoSpace
	case stBadRef:
		return gnt.ErrBadRef
	case stNotBindable:
		return evtchn.ErrNotBindable
	case stClosed:
		return evtchn.ErrClosed
	}
	return errors.New("failed")
}
