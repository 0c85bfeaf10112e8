//go:build linux

package simdaemon

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// dport is an event channel port bound through one connection, with its
// two bells (simproto's package comment): in, which its process waits on,
// and out, which its process writes to raise an event at the remote end.
// Both are eventfds, shared with the process and with the remote end's
// process (the remote's in is this port's out, and the other way round).
// The daemon keeps its own descriptors of both, which a later binding to
// this port gets duplicates of.
type dport struct {
	key     portKey
	ch      evtchn.Channel
	in, out int
}

// portKey names a port in the host.
type portKey struct {
	domid uint16
	port  evtchn.Port
}

// ring raises an event on an eventfd. It never blocks: EAGAIN means the
// count is saturated, so an event is pending anyway.
func ring(fd int) {
	_, _ = unix.Write(fd, simproto.BellRing[:])
}

// bind binds a port through the connection (bind does it in the Switch)
// and gives it its bells: for a port bound to remote's port, the two bells
// of that port crossed over; for a new unbound port, two fresh ones.
func (c *conn) bind(bind func() (evtchn.Channel, error), remote *portKey) (simproto.Msg, []int, error) {
	d := c.d
	d.bellMu.Lock()
	defer d.bellMu.Unlock()
	ch, err := bind()
	if err != nil {
		return nil, nil, err // handle reports it with its status
	}
	p := &dport{key: portKey{c.domid, ch.LocalPort()}, ch: ch, in: -1, out: -1}
	var r *dport
	if remote != nil {
		r = d.bells[*remote]
	}
	if r != nil {
		p.in, err = unix.FcntlInt(uintptr(r.out), unix.F_DUPFD_CLOEXEC, 0)
		if err == nil {
			p.out, err = unix.FcntlInt(uintptr(r.in), unix.F_DUPFD_CLOEXEC, 0)
		}
	} else {
		// Unbound, or bound to a port whose channel was closed but
		// that is still held for an unmap notification (no bells
		// left): nothing rings the port's out bell but this process.
		p.in, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err == nil {
			p.out, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		}
	}
	if err == nil {
		in := p.in
		err = evtsim.Forward(ch, func() { ring(in) })
	}
	if err != nil {
		p.release()
		return nil, nil, simproto.Errorf(simproto.StFailed, "vchan-simd: bind: bells: %v", err)
	}
	d.bells[p.key] = p
	c.mu.Lock()
	c.ports[uint32(p.key.port)] = p
	c.mu.Unlock()
	c.d.logf("conn %d dom%d: bound port %d", c.id, c.domid, p.key.port)
	return simproto.Msg(nil).U32(simproto.StOK, uint32(p.key.port)), []int{p.in, p.out}, nil
}

// release unbinds the port in the Switch and closes the daemon's bells;
// d.bellMu must be held. The processes keep theirs: a bell written after
// its port went away is read by nobody, as Xen drops an event to an
// unbound port.
func (p *dport) release() error {
	_ = evtsim.Forward(p.ch, nil)
	err := p.ch.Close()
	for _, fd := range [2]int{p.in, p.out} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return err
}

// port returns the port num bound through this connection.
func (c *conn) port(op string, num uint32) (*dport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.ports[num]
	if p == nil {
		return nil, simproto.Errorf(simproto.StClosed, "vchan-simd: %s port %d: not bound through this connection: %v", op, num, evtchn.ErrClosed)
	}
	return p, nil
}

// notify raises an event on the port's remote end through the Switch,
// which rings the remote's bell; processes ring it themselves.
func (c *conn) notify(num uint32) error {
	p, err := c.port("notify", num)
	if err != nil {
		return err
	}
	if err := p.ch.Notify(); err != nil {
		return simproto.Errorf(simproto.StClosed, "vchan-simd: %v", err)
	}
	return nil
}

func (c *conn) unbind(num uint32) error {
	p, err := c.port("unbind", num)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.ports, num)
	c.mu.Unlock()
	c.d.logf("conn %d dom%d: unbind port %d", c.id, c.domid, num)
	if err := c.d.releasePort(p); err != nil {
		return simproto.Errorf(simproto.StClosed, "vchan-simd: %v", err)
	}
	return nil
}

// releasePort forgets p's bells and releases it.
func (d *Daemon) releasePort(p *dport) error {
	d.bellMu.Lock()
	defer d.bellMu.Unlock()
	if d.bells[p.key] == p {
		delete(d.bells, p.key)
	}
	if err := p.release(); err != nil {
		return fmt.Errorf("port %d: %w", p.key.port, err)
	}
	return nil
}
