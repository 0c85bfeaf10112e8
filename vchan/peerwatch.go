package vchan

import (
	"errors"
	"sync"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// When a peer process dies, its kernel's unmap notification clears its live
// byte and wakes us. When the peer's whole domain is destroyed (xl destroy),
// no kernel of that domain runs again: nothing clears the byte and, since
// Xen silently drops events on a port whose remote end is gone, nothing wakes
// us. The toolstack removes the domain's xenstore home and xenstored fires
// @releaseDomain; the peer watch then checks whether the peer's home
// /local/domain/<id> still exists, and wakes the connections of a peer
// whose home is gone.
//
// Only ENOENT proves a domain gone. A survivor that may read the peer's home
// (dom0, the usual vchan endpoint, or any domain granted read access) gets
// it; an unprivileged domain gets EACCES whether the peer exists or not
// (XS_IS_DOMAIN_INTRODUCED is privileged too). Such a domain learns it from
// Xen instead: a blocked wait asks, once a second, whether its event
// channel port is still connected (internal/evtchn's ErrPeerGone, where
// the kernel lets a domU make that hypercall; Conn.poll).

// peerWatch watches @releaseDomain for the connections of one Host while any
// is open: one goroutine per Host, stopped when its last connection closes.
type peerWatch struct {
	mu    sync.Mutex
	conns map[*Conn]struct{}
	stop  chan struct{}
	done  chan struct{}
}

// watchPeer registers c, starting the watch if it is the first connection.
// If the watch cannot be set up, c simply goes without it: the live byte and
// deadlines still apply.
func (h *Host) watchPeer(c *Conn) {
	pw := &h.peers
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.conns == nil {
		pw.conns = make(map[*Conn]struct{})
	}
	pw.conns[c] = struct{}{}
	if pw.stop != nil {
		return
	}
	xs, err := h.xenstore()
	if err != nil {
		return
	}
	w, err := xs.Watch(xenstore.ReleaseDomainPath)
	if err != nil {
		return
	}
	pw.stop, pw.done = make(chan struct{}), make(chan struct{})
	go pw.run(xs, w, pw.stop, pw.done)
}

// unwatchPeer removes c, stopping the watch with the last connection.
func (h *Host) unwatchPeer(c *Conn) {
	pw := &h.peers
	pw.mu.Lock()
	delete(pw.conns, c)
	var stop, done chan struct{}
	if len(pw.conns) == 0 && pw.stop != nil {
		stop, done = pw.stop, pw.done
		pw.stop, pw.done = nil, nil
	}
	pw.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

func (pw *peerWatch) run(xs xenstore.Client, w xenstore.Watch, stop, done chan struct{}) {
	defer close(done)
	defer w.Close()
	for {
		select {
		case <-stop:
			return
		case _, ok := <-w.Events():
			if !ok {
				return
			}
		}
		pw.mu.Lock()
		conns := make([]*Conn, 0, len(pw.conns))
		for c := range pw.conns {
			conns = append(conns, c)
		}
		pw.mu.Unlock()
		gone := map[uint16]bool{}
		for _, c := range conns {
			id := c.remote.Domain
			dead, checked := gone[id]
			if !checked {
				_, err := xs.Read(xenstore.DomainPath(id))
				dead = errors.Is(err, syscall.ENOENT)
				gone[id] = dead
			}
			if dead {
				c.peerDomainGone()
			}
		}
	}
}
