//go:build linux

package simdaemon

import (
	"encoding/binary"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// dport is an event channel port bound through one connection.
type dport struct {
	ch     evtchn.Channel
	masked bool          // written to the event socket, not unmasked yet; guarded by conn.mu
	unmask chan struct{} // capacity 1
	stop   chan struct{}
	done   chan struct{} // closed when the port's pump has returned
}

// halt stops the port's pump and waits for it, so that no Wait is in
// progress when the channel is closed.
func (p *dport) halt() {
	close(p.stop)
	p.ch.Interrupt()
	<-p.done
}

// bind binds a port through the connection and starts its pump.
func (c *conn) bind(bind func() (evtchn.Channel, error)) (simproto.Msg, error) {
	ch, err := bind()
	if err != nil {
		return nil, err // handle reports it with its status
	}
	p := &dport{ch: ch, unmask: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	num := uint32(ch.LocalPort())
	c.mu.Lock()
	c.ports[num] = p
	c.mu.Unlock()
	c.wg.Add(1)
	go c.pump(num, p)
	c.d.logf("conn %d dom%d: bound port %d", c.id, c.domid, num)
	return simproto.Msg(nil).U32(simproto.StOK, num), nil
}

// pump forwards the events of one port to the event socket with the
// device's pending-bit semantics: once written, the port is masked until
// the process writes it back.
func (c *conn) pump(num uint32, p *dport) {
	defer c.wg.Done()
	defer close(p.done)
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], num)
	for {
		err := p.ch.Wait(time.Time{})
		select {
		case <-p.stop:
			return
		default:
		}
		if err != nil {
			c.d.logf("conn %d dom%d: port %d: %v", c.id, c.domid, num, err)
			return
		}
		c.mu.Lock()
		p.masked = true
		c.mu.Unlock()
		if _, err := c.ev.Write(b[:]); err != nil {
			return // the connection is going away
		}
		select {
		case <-p.unmask:
		case <-p.stop:
			return
		}
	}
}

// readUnmasks reads the ports the process writes back and unmasks them.
func (c *conn) readUnmasks() {
	defer c.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := c.ev.Read(buf)
		if err != nil {
			return
		}
		c.mu.Lock()
		for i := 0; i+4 <= n; i += 4 {
			p := c.ports[binary.NativeEndian.Uint32(buf[i:])]
			if p != nil && p.masked {
				p.masked = false
				p.unmask <- struct{}{} // never blocks: one token per masking
			}
		}
		c.mu.Unlock()
	}
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

// notifyAsync handles a notify_async request: like notify, but the result
// goes nowhere (there is no reply), so a failure is only logged.
func (c *conn) notifyAsync(b []byte) {
	p := simproto.Parser{B: b[4:]}
	port := p.U32()
	if p.Bad {
		c.d.logf("conn %d dom%d: notify_async: request too short (%d bytes)", c.id, c.domid, len(b))
		return
	}
	if err := c.notify(port); err != nil {
		c.d.logf("conn %d dom%d: notify_async: dropped: %v", c.id, c.domid, err)
	}
}

func (c *conn) unbind(num uint32) error {
	p, err := c.port("unbind", num)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.ports, num)
	c.mu.Unlock()
	p.halt()
	c.d.logf("conn %d dom%d: unbind port %d", c.id, c.domid, num)
	if err := p.ch.Close(); err != nil {
		return simproto.Errorf(simproto.StClosed, "vchan-simd: %v", err)
	}
	return nil
}
