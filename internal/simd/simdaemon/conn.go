//go:build linux

package simdaemon

import (
	"errors"
	"net"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// conn is one control connection: one process acting as a domain.
type conn struct {
	d     *Daemon
	id    int
	domid uint16
	uc    *net.UnixConn
	ev    *net.UnixConn // daemon end of the event socket (closed: the daemon is gone); nil before hello

	// The connection's grant handles, and the regions shared and mapped
	// through them by number (see grants.go). Only serve's goroutine
	// uses them.
	sharer     gnt.Sharer
	mapper     gnt.Mapper
	regions    map[uint32]gnt.Region
	nextRegion uint32

	mu    sync.Mutex
	ports map[uint32]*dport
	dev   evtchn.Device
}

// abort closes the connection's sockets; serve then cleans up.
func (c *conn) abort() {
	c.uc.Close()
	c.mu.Lock()
	if c.ev != nil {
		c.ev.Close()
	}
	c.mu.Unlock()
}

// serve handles the connection's requests, one at a time, and cleans up
// when the process goes away.
func (c *conn) serve() {
	d := c.d
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
	}()
	buf := make([]byte, simproto.MaxMsg)
	oob := make([]byte, unix.CmsgSpace(simproto.MaxFDs*4))
	joined := false
	for {
		n, oobn, flags, _, err := c.uc.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			closeRights(oob[:oobn]) // no request carries descriptors
		}
		if err != nil || n == 0 || flags&unix.MSG_TRUNC != 0 {
			break
		}
		var reply simproto.Msg
		var fds []int
		if !joined {
			var evfd int
			reply, evfd, err = c.hello(buf[:n])
			if err != nil {
				c.d.logf("conn %d: hello: error: %v", c.id, err)
				reply = append(simproto.Msg(nil).U32(err.(*simproto.StatusError).Status), err.Error()...)
				_, _, _ = c.uc.WriteMsgUnix(reply, nil, nil)
				break
			}
			joined = true
			_, _, err = c.uc.WriteMsgUnix(reply, unix.UnixRights(evfd), nil)
			unix.Close(evfd) // the process has its own copy now
		} else {
			reply, fds = c.handle(buf[:n])
			var rights []byte
			if len(fds) > 0 {
				rights = unix.UnixRights(fds...)
			}
			_, _, err = c.uc.WriteMsgUnix(reply, rights, nil)
		}
		if err != nil {
			break
		}
	}
	c.uc.Close()
	if joined {
		c.cleanup()
		d.leave(c.domid)
	}
}

// closeRights closes descriptors received in a control message.
func closeRights(oob []byte) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range cmsgs {
		fds, err := unix.ParseUnixRights(&m)
		if err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
}

// hello makes the connection domain domid and creates its event socket,
// whose process end it returns.
func (c *conn) hello(b []byte) (simproto.Msg, int, error) {
	p := simproto.Parser{B: b}
	op, version, domid := p.U32(), p.U32(), p.U32()
	switch {
	case p.Bad || op != simproto.OpHello:
		return nil, -1, simproto.Errorf(simproto.StInval, "vchan-simd: the first request must be hello")
	case version != simproto.Version:
		return nil, -1, simproto.Errorf(simproto.StInval, "vchan-simd: protocol version %d, want %d (the client and vchan-simd were built from different versions)", version, simproto.Version)
	case domid >= simproto.FirstReservedDomID:
		return nil, -1, simproto.Errorf(simproto.StInval, "vchan-simd: domain id %d is reserved (must be below %d)", domid, simproto.FirstReservedDomID)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, simproto.Errorf(simproto.StFailed, "vchan-simd: event socketpair: %v", err)
	}
	f := os.NewFile(uintptr(fds[0]), "evtchn")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, simproto.Errorf(simproto.StFailed, "vchan-simd: event socket: %v", err)
	}
	c.domid = uint16(domid)
	if err := c.d.join(c.domid); err != nil {
		fc.Close()
		unix.Close(fds[1])
		return nil, -1, simproto.Errorf(simproto.StFailed, "%v", err)
	}
	c.sharer, c.mapper = c.d.grants.Sharer(c.domid), c.d.grants.Mapper(c.domid)
	c.mu.Lock()
	c.ev = fc.(*net.UnixConn)
	c.dev = c.d.events.Open(c.domid)
	c.mu.Unlock()
	c.d.logf("conn %d: hello: domain %d", c.id, domid)
	// The process gets fds[1]; serve closes it once sent.
	return simproto.Msg(nil).U32(simproto.StOK, simproto.Version), fds[1], nil
}

// handle runs one request and returns the reply and the descriptors to pass
// with it, which stay owned by the daemon.
func (c *conn) handle(b []byte) (simproto.Msg, []int) {
	p := simproto.Parser{B: b}
	op := p.U32()
	var (
		reply simproto.Msg
		fds   []int
		err   error
	)
	switch op {
	case simproto.OpShare:
		peer, count, fl, off, port := p.U32(), p.U32(), p.U32(), p.U32(), p.U32()
		if p.Bad {
			break
		}
		reply, fds, err = c.share(uint16(peer), int(count), simproto.DecodeNotify(fl, off, port))
	case simproto.OpMap:
		peer, writable, fl, off, port := p.U32(), p.U32(), p.U32(), p.U32(), p.U32()
		refs := make([]gnt.Ref, p.Left())
		for i := range refs {
			refs[i] = gnt.Ref(p.U32())
		}
		if p.Bad {
			break
		}
		reply, fds, err = c.mapRefs(uint16(peer), refs, writable != 0, simproto.DecodeNotify(fl, off, port))
	case simproto.OpUnmap:
		id := p.U32()
		if p.Bad {
			break
		}
		err = c.unmap(id)
	case simproto.OpBindUnbound:
		remote := p.U32()
		if p.Bad {
			break
		}
		reply, fds, err = c.bind(func() (evtchn.Channel, error) { return c.dev.BindUnbound(uint16(remote)) }, nil)
	case simproto.OpBindInterdomain:
		remote, rport := p.U32(), p.U32()
		if p.Bad {
			break
		}
		reply, fds, err = c.bind(func() (evtchn.Channel, error) {
			return c.dev.BindInterdomain(uint16(remote), evtchn.Port(rport))
		}, &portKey{uint16(remote), evtchn.Port(rport)})
	case simproto.OpNotify:
		port := p.U32()
		if p.Bad {
			break
		}
		err = c.notify(port)
	case simproto.OpUnbind:
		port := p.U32()
		if p.Bad {
			break
		}
		err = c.unbind(port)
	default:
		err = simproto.Errorf(simproto.StInval, "vchan-simd: unknown request %d", op)
	}
	if p.Bad {
		err = simproto.Errorf(simproto.StInval, "vchan-simd: %s request too short (%d bytes)", simproto.OpName(op), len(b))
	}
	if err != nil {
		var se *simproto.StatusError
		if !errors.As(err, &se) {
			se = simproto.Errorf(simproto.StatusOf(err), "vchan-simd: %v", err)
		}
		c.d.logf("conn %d dom%d: %s: error: %s", c.id, c.domid, simproto.OpName(op), se.Msg)
		return append(simproto.Msg(nil).U32(se.Status), se.Msg...), nil
	}
	if reply == nil {
		reply = simproto.Msg(nil).U32(simproto.StOK)
	}
	return reply, fds
}

// cleanup is what the kernel does when a process exits: its regions are
// unmapped in creation order (firing their notifications), then its ports
// are unbound.
func (c *conn) cleanup() {
	d := c.d
	ids := make([]uint32, 0, len(c.regions))
	for id := range c.regions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		_ = c.closeRegion(id)
	}
	if c.sharer != nil {
		_ = c.sharer.Close()
		_ = c.mapper.Close()
	}

	c.mu.Lock()
	ports := c.ports
	c.ports = make(map[uint32]*dport)
	ev := c.ev
	c.mu.Unlock()
	for _, p := range ports {
		_ = d.releasePort(p)
	}
	if ev != nil {
		ev.Close()
	}
	if c.dev != nil {
		_ = c.dev.Close()
	}
	d.logf("conn %d dom%d: closed (%d regions, %d ports released)", c.id, c.domid, len(ids), len(ports))
}
