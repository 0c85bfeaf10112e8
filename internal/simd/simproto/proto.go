// Package simproto is the control protocol of the cross-process simulated
// Xen host: what its daemon (package simdaemon, behind cmd/vchan-simd) and
// its client (package simclient, behind vchan.SimHost) both speak, and where
// the daemon keeps its sockets.
//
// The daemon plays hypervisor and xenstored. It owns the grant tables (a
// gntsim.Table: pages are memfds), the event channels (an evtsim.Switch) and
// the xenstore (a xssim.Store served by xsserver). It needs Linux; elsewhere
// simdaemon.Start and simclient.Connect fail and say so. All its state lives
// in one directory:
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
//	5 bind_unbound           remote                                port                             bells in, out
//	6 bind_interdomain       remote, remote_port                   port                             bells in, out
//	7 notify                 port                                  -
//	8 unbind                 port                                  -
//
// Op 9 (notify_async, version 2) is gone: a process rings the remote end's
// bell itself (below).
//
// nflags holds the unmap notification, with the bits of the Linux uapi
// (UNMAP_NOTIFY_CLEAR_BYTE 1, UNMAP_NOTIFY_SEND_EVENT 2). Status codes: 1
// EINVAL, 2 grant limit (gnt.ErrNoSpace), 3 bad grant reference
// (gnt.ErrBadRef), 4 port not bindable (evtchn.ErrNotBindable), 5 closed
// (evtchn.ErrClosed), 6 other failure. A share asks for at most
// MaxSharePages pages; a map names at most gntsim.MaxMapPages references,
// from at most gntsim.MaxMapShares shares.
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
// Every bound port has two bells, eventfds the daemon creates (non-blocking,
// counting) and passes with the bind reply: in, whose count is the port's
// pending events, and out, which is the remote end's in. A process waits
// for its port by polling in and takes the events by reading it, which
// also unmasks the port (the pending bit and mask of Xen coalesce into the
// count); it raises an event at the remote end by adding 1 to out. So an
// event goes from process to process with one write(2), and the daemon is
// not scheduled for it. The daemon keeps its own descriptors of both bells:
// a binding to the port gets them crossed over (the binder's in is the
// port's out), and the events the daemon raises itself (notify, unmap
// notifications) ring in through the event channel switch. A bell written
// while nobody is bound to its end is read by nobody, as Xen drops the event;
// a later binding finds it pending, as Xen marks a freshly bound port.
// Version 3 of the protocol brought the bells.
//
// The event socket of the hello reply carries nothing: its end of file
// tells the process that the daemon is gone.
//
// # Unmap notifications and death
//
// The daemon maps every region it hands out too (its grant tables are a
// gntsim.Table, which does that in process). When a region with an unmap
// notification is unmapped (unmap request), or its process dies (its
// control connection closes), the daemon clears the byte with an atomic AND
// on the aligned 32-bit word and sends the event on the port held for it,
// exactly as gntalloc and gntdev do on munmap or process exit (docs/PROTOCOL.md
// §5). Then it closes the connection's ports. When the last connection of a
// domain other than dom0 closes, the domain is released: its xenstore home
// goes and @releaseDomain fires.
package simproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/gnt/gntsim"
)

// BellRing is what a write to a bell adds to its count: one event.
var BellRing = func() (b [8]byte) {
	binary.NativeEndian.PutUint64(b[:], 1)
	return b
}()

// Version is the control protocol version hello carries.
const Version = 3

// Requests.
const (
	OpHello uint32 = iota + 1
	OpShare
	OpMap
	OpUnmap
	OpBindUnbound
	OpBindInterdomain
	OpNotify
	OpUnbind
)

var opNames = [...]string{"?", "hello", "share", "map", "unmap", "bind_unbound", "bind_interdomain", "notify", "unbind"}

// OpName names a request in messages.
func OpName(op uint32) string {
	if int(op) < len(opNames) {
		return opNames[op]
	}
	return "op" + strconv.FormatUint(uint64(op), 10)
}

// Reply status codes.
const (
	StOK uint32 = iota
	StInval
	StNoSpace
	StBadRef
	StNotBindable
	StClosed
	StFailed
)

// Unmap notification flags, as in <xen/gntalloc.h> and <xen/gntdev.h>.
const (
	notifyClearByte = 1
	notifySendEvent = 2
)

// Limits of one request. How many references one map may name, and from how
// many shares, is the grant tables' own limit: gntsim.MaxMapPages and
// gntsim.MaxMapShares.
const (
	// MaxSharePages is the most pages one share request may ask for, so
	// that its reply (one reference per page) fits in a message.
	MaxSharePages = 4096
	// MaxFDs is the most descriptors one reply carries: a map reply
	// carries one per share its pages come from.
	MaxFDs = gntsim.MaxMapShares
	// MaxMsg bounds a message. The largest are a share reply of
	// MaxSharePages references and a map reply of gntsim.MaxMapPages
	// pages in as many segments: 3 + 3×MaxMapPages uint32s.
	MaxMsg = 64 << 10
)

// Compile-time checks that the largest replies fit in MaxMsg (a negative
// constant does not convert to uint).
const (
	_ = uint(MaxMsg - 4*(2+MaxSharePages))
	_ = uint(MaxMsg - 4*(3+3*gntsim.MaxMapPages))
)

// FirstReservedDomID is DOMID_FIRST_RESERVED: domain ids from here on are
// special (DOMID_SELF, DOMID_IO, ...) and name no real domain.
const FirstReservedDomID = 0x7ff0

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

// ControlPath returns the control socket of the simulator in dir.
func ControlPath(dir string) string { return filepath.Join(dir, "control") }

// XenstorePath returns the xenstored socket of domain domid in dir: a
// connection on it acts as that domain (XENSTORED_PATH for the C tools).
func XenstorePath(dir string, domid uint16) string {
	return filepath.Join(dir, "dom"+strconv.Itoa(int(domid)), "xenstored")
}

// Msg builds a message of native-endian uint32s.
type Msg []byte

// U32 appends vs.
func (m Msg) U32(vs ...uint32) Msg {
	for _, v := range vs {
		m = binary.NativeEndian.AppendUint32(m, v)
	}
	return m
}

// Parser reads native-endian uint32s from the message B; reading past its
// end sets Bad instead of panicking.
type Parser struct {
	B   []byte
	Bad bool
}

// U32 reads the next uint32, or returns 0 and sets Bad.
func (p *Parser) U32() uint32 {
	if len(p.B) < 4 {
		p.Bad = true
		return 0
	}
	v := binary.NativeEndian.Uint32(p.B)
	p.B = p.B[4:]
	return v
}

// Left is how many whole uint32s remain.
func (p *Parser) Left() int { return len(p.B) / 4 }

// EncodeNotify and DecodeNotify carry a *gnt.UnmapNotify as (flags,
// offset, port).
func EncodeNotify(n *gnt.UnmapNotify) (flags, offset, port uint32) {
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

// DecodeNotify is the inverse of EncodeNotify.
func DecodeNotify(flags, offset, port uint32) gnt.UnmapNotify {
	return gnt.UnmapNotify{
		ClearByte: flags&notifyClearByte != 0,
		Offset:    int(int32(offset)),
		SendEvent: flags&notifySendEvent != 0,
		Port:      port,
	}
}

// StatusError is a failure the daemon reports: a status code and a message.
type StatusError struct {
	Status uint32
	Msg    string
}

func (e *StatusError) Error() string { return e.Msg }

// Errorf returns a *StatusError.
func Errorf(status uint32, format string, args ...any) *StatusError {
	return &StatusError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// StatusOf is the status code that reports err: the one of the sentinel it
// wraps (see Sentinel), else StFailed.
func StatusOf(err error) uint32 {
	switch {
	case errors.Is(err, gnt.ErrNoSpace):
		return StNoSpace
	case errors.Is(err, gnt.ErrBadRef):
		return StBadRef
	case errors.Is(err, syscall.EINVAL):
		// Before ErrClosed: an unmap notification on a port that is not
		// bound wraps both, and is EINVAL, as in gntalloc and gntdev.
		return StInval
	case errors.Is(err, evtchn.ErrNotBindable):
		return StNotBindable
	case errors.Is(err, evtchn.ErrClosed):
		return StClosed
	}
	return StFailed
}

// Sentinel is the error a status code stands for on the client side.
func Sentinel(status uint32) error {
	switch status {
	case StInval:
		return syscall.EINVAL
	case StNoSpace:
		return gnt.ErrNoSpace
	case StBadRef:
		return gnt.ErrBadRef
	case StNotBindable:
		return evtchn.ErrNotBindable
	case StClosed:
		return evtchn.ErrClosed
	}
	return errors.New("failed")
}

// NeedsLinux is the error of what the simulator cannot do off Linux (its
// daemon hands out memfds over SCM_RIGHTS): it wraps errors.ErrUnsupported.
func NeedsLinux(what string) error {
	return fmt.Errorf("%s: needs Linux (memfd, SCM_RIGHTS); this is %s: %w", what, runtime.GOOS, errors.ErrUnsupported)
}
