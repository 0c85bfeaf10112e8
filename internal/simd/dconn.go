//go:build linux

package simd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/gnt"
)

// firstRef is the first grant reference of each domain: Xen reserves the
// first 8 entries of a grant table (GNTTAB_NR_RESERVED_ENTRIES).
const firstRef gnt.Ref = 8

// mem is one memfd of granted pages, mapped read-write in the daemon so it
// can clear unmap-notify bytes. It lives while the share that created it or
// any map of its pages does.
type mem struct {
	fd    int
	rofd  int // read-only reopening, for read-only maps; -1 until needed
	base  unsafe.Pointer
	size  int
	users int
}

// grant is one granted page, which only domain peer may map.
type grant struct {
	mem  *mem
	page int
	peer uint16
}

// page is one page of a map region.
type page struct {
	mem  *mem
	page int
}

// region is a share or a map made by one connection.
type region struct {
	id     uint32
	dom    *domain
	shared bool
	mem    *mem      // shared
	refs   []gnt.Ref // shared
	pages  []page    // mapped
	notify gnt.UnmapNotify
	hold   *evtsim.PortRef
}

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

// conn is one control connection: one process acting as a domain.
type conn struct {
	d     *Daemon
	id    int
	domid uint16
	uc    *net.UnixConn
	ev    *net.UnixConn // daemon end of the event socket; nil before hello

	regions    map[uint32]*region // guarded by d.mu
	nextRegion uint32             // guarded by d.mu

	mu    sync.Mutex
	ports map[uint32]*dport
	dev   evtchn.Device

	wg sync.WaitGroup // port pumps and the unmask reader
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
	buf := make([]byte, maxMsg)
	oob := make([]byte, unix.CmsgSpace(maxMapFiles*4))
	joined := false
	for {
		n, oobn, flags, _, err := c.uc.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			closeRights(oob[:oobn]) // no request carries descriptors
		}
		if err != nil || n == 0 || flags&unix.MSG_TRUNC != 0 {
			break
		}
		var reply msg
		var fds []int
		if !joined {
			var evfd int
			reply, evfd, err = c.hello(buf[:n])
			if err != nil {
				c.d.logf("conn %d: hello: error: %v", c.id, err)
				reply = append(msg(nil).u32(err.(*statusError).status), err.Error()...)
				_, _, _ = c.uc.WriteMsgUnix(reply, nil, nil)
				break
			}
			joined = true
			_, _, err = c.uc.WriteMsgUnix(reply, unix.UnixRights(evfd), nil)
			unix.Close(evfd) // the process has its own copy now
		} else if n >= 4 && binary.NativeEndian.Uint32(buf) == opNotifyAsync {
			c.notifyAsync(buf[:n]) // no reply
			continue
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
func (c *conn) hello(b []byte) (msg, int, error) {
	p := parser{b: b}
	op, version, domid := p.u32(), p.u32(), p.u32()
	switch {
	case p.bad || op != opHello:
		return nil, -1, errorf(stInval, "vchan-simd: the first request must be hello")
	case version != protoVersion:
		return nil, -1, errorf(stInval, "vchan-simd: protocol version %d, want %d (the client and vchan-simd were built from different versions)", version, protoVersion)
	case domid >= firstDomIDReserved:
		return nil, -1, errorf(stInval, "vchan-simd: domain id %d is reserved (must be below %d)", domid, firstDomIDReserved)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, errorf(stFailed, "vchan-simd: event socketpair: %v", err)
	}
	f := os.NewFile(uintptr(fds[0]), "evtchn")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, errorf(stFailed, "vchan-simd: event socket: %v", err)
	}
	c.domid = uint16(domid)
	if err := c.d.join(c.domid); err != nil {
		fc.Close()
		unix.Close(fds[1])
		return nil, -1, errorf(stFailed, "%v", err)
	}
	c.mu.Lock()
	c.ev = fc.(*net.UnixConn)
	c.dev = c.d.events.Open(c.domid)
	c.mu.Unlock()
	c.wg.Add(1)
	go c.readUnmasks()
	c.d.logf("conn %d: hello: domain %d", c.id, domid)
	// The process gets fds[1]; serve closes it once sent.
	return msg(nil).u32(stOK, protoVersion), fds[1], nil
}

// handle runs one request and returns the reply and the descriptors to pass
// with it, which stay owned by the daemon.
func (c *conn) handle(b []byte) (msg, []int) {
	p := parser{b: b}
	op := p.u32()
	var (
		reply msg
		fds   []int
		err   error
	)
	switch op {
	case opShare:
		peer, count, fl, off, port := p.u32(), p.u32(), p.u32(), p.u32(), p.u32()
		if p.bad {
			break
		}
		reply, fds, err = c.share(uint16(peer), int(count), decodeNotify(fl, off, port))
	case opMap:
		peer, writable, fl, off, port := p.u32(), p.u32(), p.u32(), p.u32(), p.u32()
		refs := make([]gnt.Ref, p.left())
		for i := range refs {
			refs[i] = gnt.Ref(p.u32())
		}
		if p.bad {
			break
		}
		reply, fds, err = c.mapRefs(uint16(peer), refs, writable != 0, decodeNotify(fl, off, port))
	case opUnmap:
		id := p.u32()
		if p.bad {
			break
		}
		err = c.unmap(id)
	case opBindUnbound:
		remote := p.u32()
		if p.bad {
			break
		}
		reply, err = c.bind(func() (evtchn.Channel, error) { return c.dev.BindUnbound(uint16(remote)) })
	case opBindInterdomain:
		remote, rport := p.u32(), p.u32()
		if p.bad {
			break
		}
		reply, err = c.bind(func() (evtchn.Channel, error) {
			return c.dev.BindInterdomain(uint16(remote), evtchn.Port(rport))
		})
	case opNotify:
		port := p.u32()
		if p.bad {
			break
		}
		err = c.notify(port)
	case opUnbind:
		port := p.u32()
		if p.bad {
			break
		}
		err = c.unbind(port)
	default:
		err = errorf(stInval, "vchan-simd: unknown request %d", op)
	}
	if p.bad {
		err = errorf(stInval, "vchan-simd: %s request too short (%d bytes)", opName(op), len(b))
	}
	if err != nil {
		var se *statusError
		if !errors.As(err, &se) {
			se = errorf(stFailed, "%v", err)
		}
		c.d.logf("conn %d dom%d: %s: error: %s", c.id, c.domid, opName(op), se.msg)
		return append(msg(nil).u32(se.status), se.msg...), nil
	}
	if reply == nil {
		reply = msg(nil).u32(stOK)
	}
	return reply, fds
}

// share allocates count pages and grants them to peer.
func (c *conn) share(peer uint16, count int, n gnt.UnmapNotify) (msg, []int, error) {
	d := c.d
	if count < 1 || count > MaxSharePages {
		return nil, nil, errorf(stInval, "vchan-simd: share %d pages: count must be 1..%d", count, MaxSharePages)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.doms[c.domid]
	if count > d.limit-dom.granted {
		return nil, nil, errorf(stNoSpace, "vchan-simd: gntalloc: %d pages already granted by domain %d, %d more requested "+
			"(limit %d; restart vchan-simd with a larger -grant-limit)", dom.granted, dom.id, count, d.limit)
	}
	size := count * gnt.PageSize
	hold, err := c.checkNotifyLocked(&n, size, true)
	if err != nil {
		return nil, nil, err
	}
	m, err := newMem(size)
	if err != nil {
		if hold != nil {
			hold.Release()
		}
		return nil, nil, err
	}
	m.users = 1
	r := &region{dom: dom, shared: true, mem: m, refs: make([]gnt.Ref, count), notify: n, hold: hold}
	for i := range r.refs {
		ref := dom.allocRef()
		dom.grants[ref] = &grant{mem: m, page: i, peer: peer}
		r.refs[i] = ref
	}
	dom.granted += count
	c.addRegionLocked(r)
	reply := msg(nil).u32(stOK, r.id)
	for _, ref := range r.refs {
		reply = reply.u32(uint32(ref))
	}
	d.logf("conn %d dom%d: share %d pages to dom%d: region %d, refs %v", c.id, c.domid, count, peer, r.id, r.refs)
	return reply, []int{m.fd}, nil
}

// newMem creates and maps a memfd of size zeroed bytes.
func newMem(size int) (*mem, error) {
	fd, err := unix.MemfdCreate("vchan-sim-grant", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, errorf(stFailed, "vchan-simd: memfd_create: %v", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, errorf(stFailed, "vchan-simd: ftruncate memfd to %d bytes: %v", size, err)
	}
	base, err := unix.MmapPtr(fd, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, errorf(stFailed, "vchan-simd: mmap %d bytes of memfd: %v", size, err)
	}
	return &mem{fd: fd, rofd: -1, base: base, size: size}, nil
}

// readOnlyFD returns a read-only descriptor of the memfd: mapped
// MAP_SHARED it can never be written through.
func (m *mem) readOnlyFD() (int, error) {
	if m.rofd < 0 {
		fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(m.fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, errorf(stFailed, "vchan-simd: reopen memfd read-only: %v", err)
		}
		m.rofd = fd
	}
	return m.rofd, nil
}

// put drops a user; the last one unmaps and closes the memfd.
func (m *mem) put() {
	m.users--
	if m.users > 0 {
		return
	}
	unix.MunmapPtr(m.base, uintptr(m.size))
	unix.Close(m.fd)
	if m.rofd >= 0 {
		unix.Close(m.rofd)
	}
}

// allocRef returns an unused grant reference. d.mu must be held.
func (dom *domain) allocRef() gnt.Ref {
	for {
		ref := dom.nextRef
		dom.nextRef++
		if ref < firstRef {
			continue
		}
		if _, used := dom.grants[ref]; !used {
			return ref
		}
	}
}

// addRegionLocked registers r with the connection. d.mu must be held.
func (c *conn) addRegionLocked(r *region) {
	for {
		c.nextRegion++
		if _, used := c.regions[c.nextRegion]; !used && c.nextRegion != 0 {
			break
		}
	}
	r.id = c.nextRegion
	c.regions[r.id] = r
}

// checkNotifyLocked validates an unmap notification for a mapping of size
// bytes and takes a hold on its port, as gntalloc and gntdev take an
// evtchn_get reference (docs/PROTOCOL.md §5). It clears n if it asks for nothing.
func (c *conn) checkNotifyLocked(n *gnt.UnmapNotify, size int, writable bool) (*evtsim.PortRef, error) {
	if n.ClearByte {
		if n.Offset < 0 || n.Offset >= size {
			return nil, errorf(stInval, "vchan-simd: unmap notify: clear-byte offset %d outside the %d-byte mapping: %v", n.Offset, size, unix.EINVAL)
		}
		if !writable {
			return nil, errorf(stInval, "vchan-simd: unmap notify: clear-byte on a read-only mapping (gntdev refuses it; map writable): %v", unix.EINVAL)
		}
	}
	if !n.SendEvent {
		return nil, nil
	}
	hold, err := c.d.events.Hold(c.domid, evtchn.Port(n.Port))
	if err != nil {
		return nil, errorf(stInval, "vchan-simd: unmap notify: send-event on port %d of domain %d: %v (%v)", n.Port, c.domid, unix.EINVAL, err)
	}
	return hold, nil
}

// mapRefs maps pages that peer granted to this domain.
func (c *conn) mapRefs(peer uint16, refs []gnt.Ref, writable bool, n gnt.UnmapNotify) (msg, []int, error) {
	d := c.d
	if len(refs) < 1 || len(refs) > MaxMapPages {
		return nil, nil, errorf(stInval, "vchan-simd: map %d pages: count must be 1..%d", len(refs), MaxMapPages)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.doms[c.domid]
	pd := d.doms[peer]
	pages := make([]page, len(refs))
	var mems []*mem
	for i, ref := range refs {
		var g *grant
		if pd != nil {
			g = pd.grants[ref]
		}
		switch {
		case g == nil:
			return nil, nil, errorf(stBadRef, "vchan-simd: domain %d mapping grant ref %d of domain %d: no such grant (never granted, or revoked): %v",
				c.domid, ref, peer, gnt.ErrBadRef)
		case g.peer != c.domid:
			return nil, nil, errorf(stBadRef, "vchan-simd: domain %d mapping grant ref %d of domain %d: granted to domain %d, not %d: %v",
				c.domid, ref, peer, g.peer, c.domid, gnt.ErrBadRef)
		}
		pages[i] = page{mem: g.mem, page: g.page}
		if !slices.Contains(mems, g.mem) {
			mems = append(mems, g.mem)
		}
	}
	if len(mems) > maxMapFiles {
		return nil, nil, errorf(stInval, "vchan-simd: map: the references span %d shares, at most %d can be mapped at once", len(mems), maxMapFiles)
	}
	fds := make([]int, len(mems))
	for i, m := range mems {
		fds[i] = m.fd
		if !writable {
			fd, err := m.readOnlyFD()
			if err != nil {
				return nil, nil, err
			}
			fds[i] = fd
		}
	}
	hold, err := c.checkNotifyLocked(&n, len(refs)*gnt.PageSize, writable)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range mems {
		m.users++
	}
	r := &region{dom: dom, pages: pages, notify: n, hold: hold}
	dom.mapped += len(refs)
	c.addRegionLocked(r)

	// Runs of consecutive pages of one memfd become one segment.
	var segs msg
	nseg := 0
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j].mem == pages[i].mem && pages[j].page == pages[i].page+(j-i) {
			j++
		}
		segs = segs.u32(uint32(slices.Index(mems, pages[i].mem)), uint32(pages[i].page), uint32(j-i))
		nseg++
		i = j
	}
	reply := msg(nil).u32(stOK, r.id, uint32(nseg))
	reply = append(reply, segs...)
	d.logf("conn %d dom%d: map refs %v of dom%d (writable %v): region %d", c.id, c.domid, refs, peer, writable, r.id)
	return reply, fds, nil
}

// unmap closes a region the process has unmapped.
func (c *conn) unmap(id uint32) error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	r := c.regions[id]
	if r == nil {
		return errorf(stInval, "vchan-simd: unmap region %d: no such region on this connection", id)
	}
	c.closeRegionLocked(r)
	d.logf("conn %d dom%d: unmap region %d", c.id, c.domid, id)
	return nil
}

// closeRegionLocked closes r: a share's grants are revoked, then the unmap
// notification fires, in the kernel's order: clear the byte, then notify
// through the held local port. d.mu must be held.
func (c *conn) closeRegionLocked(r *region) {
	delete(c.regions, r.id)
	if r.shared {
		for _, ref := range r.refs {
			delete(r.dom.grants, ref)
		}
		r.dom.granted -= len(r.refs)
	} else {
		r.dom.mapped -= len(r.pages)
	}
	if r.notify.ClearByte {
		off := r.notify.Offset
		var b unsafe.Pointer
		if r.shared {
			b = unsafe.Add(r.mem.base, off)
		} else {
			pg := r.pages[off/gnt.PageSize]
			b = unsafe.Add(pg.mem.base, pg.page*gnt.PageSize+off%gnt.PageSize)
		}
		gnt.ClearByte((*byte)(b))
	}
	if r.hold != nil {
		_ = r.hold.Notify() // the port may be gone; the kernel ignores that too
		r.hold.Release()
	}
	if r.shared {
		r.mem.put()
	} else {
		var seen []*mem
		for _, pg := range r.pages {
			if !slices.Contains(seen, pg.mem) {
				seen = append(seen, pg.mem)
				pg.mem.put()
			}
		}
	}
}

// bind binds a port through the connection and starts its pump.
func (c *conn) bind(bind func() (evtchn.Channel, error)) (msg, error) {
	ch, err := bind()
	if err != nil {
		st := stFailed
		switch {
		case errors.Is(err, evtchn.ErrNotBindable):
			st = stNotBindable
		case errors.Is(err, evtchn.ErrClosed):
			st = stClosed
		}
		return nil, errorf(st, "vchan-simd: %v", err)
	}
	p := &dport{ch: ch, unmask: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	num := uint32(ch.LocalPort())
	c.mu.Lock()
	c.ports[num] = p
	c.mu.Unlock()
	c.wg.Add(1)
	go c.pump(num, p)
	c.d.logf("conn %d dom%d: bound port %d", c.id, c.domid, num)
	return msg(nil).u32(stOK, num), nil
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
		return nil, errorf(stClosed, "vchan-simd: %s port %d: not bound through this connection: %v", op, num, evtchn.ErrClosed)
	}
	return p, nil
}

func (c *conn) notify(num uint32) error {
	p, err := c.port("notify", num)
	if err != nil {
		return err
	}
	if err := p.ch.Notify(); err != nil {
		return errorf(stClosed, "vchan-simd: %v", err)
	}
	return nil
}

// notifyAsync handles a notify_async request: like notify, but the result
// goes nowhere (there is no reply), so a failure is only logged.
func (c *conn) notifyAsync(b []byte) {
	p := parser{b: b[4:]}
	port := p.u32()
	if p.bad {
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
		return errorf(stClosed, "vchan-simd: %v", err)
	}
	return nil
}

// cleanup is what the kernel does when a process exits: its regions are
// unmapped in creation order (firing their notifications), then its ports
// are unbound.
func (c *conn) cleanup() {
	d := c.d
	d.mu.Lock()
	ids := make([]uint32, 0, len(c.regions))
	for id := range c.regions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c.closeRegionLocked(c.regions[id])
	}
	d.mu.Unlock()

	c.mu.Lock()
	ports := c.ports
	c.ports = make(map[uint32]*dport)
	ev := c.ev
	c.mu.Unlock()
	for _, p := range ports {
		p.halt()
		_ = p.ch.Close()
	}
	if ev != nil {
		ev.Close()
	}
	c.wg.Wait()
	if c.dev != nil {
		_ = c.dev.Close()
	}
	d.logf("conn %d dom%d: closed (%d regions, %d ports released)", c.id, c.domid, len(ids), len(ports))
}

// String names the connection in messages.
func (c *conn) String() string { return fmt.Sprintf("conn %d (dom%d)", c.id, c.domid) }
