package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/vchan-go/vchan/internal/ringcopy"
)

// Memory ordering (docs/PROTOCOL.md §6, §4).
//
// libxenvchan orders its accesses to the shared page with xen_mb/rmb/wmb
// barriers around plain loads and stores, and with GCC __sync byte atomics for
// the notify bits. Here every access to a field the peer also touches goes
// through sync/atomic, whose operations are sequentially consistent (the Go
// memory model): an atomic op is never reordered with the plain memory
// accesses before or after it in program order as seen by a reader that
// synchronises with it. That gives each of libxenvchan's barriers:
//
//   - writer: load cons (atomic) → copy data → store prod (atomic). The data
//     stores cannot move above the cons load ("read the indices, then write
//     the data", xen_mb) nor below the prod store ("data before prod", wmb).
//   - reader: load prod (atomic) → copy data → store cons (atomic). The data
//     loads cannot move above the prod load (rmb) nor below the cons store
//     ("consume, then notify", xen_mb).
//   - request-notify then re-check: the atomic OR of the request bit is a
//     full barrier before the atomic re-load of the peer's index.
//   - send-notify: moving an index and then checking the peer's request
//     bit is one half of a Dekker pair (the peer's other half: set the bit,
//     then re-read the index); without a full barrier between the index
//     store and the bit load, both sides can miss each other and sleep
//     forever. libxenvchan puts xen_mb() there. Here the index is published
//     with atomic.SwapUint32, a locked XCHG on x86 and a full barrier
//     everywhere, rather than atomic.StoreUint32: the Go memory model makes
//     Store sequentially consistent, but under the race detector, atomics on
//     memory outside the Go heap (our mmap'd pages) run through TSan with
//     only release semantics, and a release store may pass a later load.
//     That was seen as a hang under -race; the swap makes the ordering a
//     property of the instruction, not of the build mode.
//
// sync/atomic has no 8-bit operations, so the four single-byte fields at
// offsets 20..23 (cli_live, srv_live, cli_notify, srv_notify) are accessed
// through the aligned 32-bit word that holds them: OR/AND with a mask that
// leaves the other three bytes alone, and compare-and-swap for a byte store.
// A locked 32-bit read-modify-write never loses a concurrent byte store or
// byte RMW of the peer (x86 holds the cache line for the whole locked op;
// LL/SC on Arm fails and retries if the peer wrote the granule), so this
// interoperates with the C peer's __sync byte ops and plain byte stores, and
// with the kernel's clear-byte on unmap.
//
// The peer can rewrite any of these words at any time. Each peer-written
// index is loaded once per step into a local and validated; this side's own
// indices are kept in private copies and only ever stored to the page, so a
// peer that scribbles on them cannot make us read or write out of bounds.

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// byteShift is the bit position, within the word at offset 20, of the byte at
// page offset off.
func byteShift(off int) uint {
	i := uint(off - offLiveWord)
	if littleEndian {
		return 8 * i
	}
	return 8 * (3 - i)
}

// maxCASAttempts bounds the compare-and-swap loops on the shared word: only a
// peer rewriting it continuously can make a CAS fail that often.
const maxCASAttempts = 1 << 16

// ring is one direction: indices in the shared page, data in the ring area.
type ring struct {
	cons, prod *uint32
	data       []byte
	mask       uint32 // len(data) - 1; len(data) is a power of two
}

func (r *ring) size() uint32 { return r.mask + 1 }

// Endpoint is one side of a vchan over its mapping of the shared page and
// the two rings. It does not block and is not safe for concurrent use by
// several readers or several writers: the caller serialises reads, and
// serialises writes; one read and one write may run at the same time.
type Endpoint struct {
	word  *uint32 // bytes 20..23
	rd    ring    // the ring this side consumes
	wr    ring    // the ring this side produces
	rdPos uint32  // private copy of rd.cons
	wrPos uint32  // private copy of wr.prod

	ownLive, peerLive uint // shifts of the live bytes within *word
	reqShift          uint // the peer's notify byte: where this side requests
	ackShift          uint // this side's notify byte: the peer's requests to honour
	layout            Layout
	server            bool
}

// NewServer initialises a freshly shared page for a server and returns its
// endpoint. left and right are the separately granted ring areas (nil for
// an in-page order), refs the grant references of their pages, left first.
// The page then holds the orders, the grant list, cli_live = 2 (waiting),
// srv_live = 1 and a write-notify request, as libxenvchan's server_init
// leaves it (docs/PROTOCOL.md §3, §9).
func NewServer(page []byte, l Layout, left, right []byte, refs []uint32) (*Endpoint, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if len(refs) != l.Grants() {
		return nil, fmt.Errorf("vchan server: %d grant refs for a layout that needs %d", len(refs), l.Grants())
	}
	if err := checkPage(page); err != nil {
		return nil, err
	}
	clear(page[:PageSize])
	binary.NativeEndian.PutUint16(page[offLeftOrder:], l.Left)
	binary.NativeEndian.PutUint16(page[offRightOrder:], l.Right)
	for i, ref := range refs {
		binary.NativeEndian.PutUint32(page[offGrants+4*i:], ref)
	}
	e, err := newEndpoint(page, l, left, right, true)
	if err != nil {
		return nil, err
	}
	atomic.StoreUint32(e.word, uint32(LiveWaiting)<<byteShift(OffCliLive)|
		uint32(LiveOpen)<<byteShift(OffSrvLive)|
		uint32(NotifyWrite)<<byteShift(offCliNotify))
	return e, nil
}

// NewClient returns the client endpoint over a page a server initialised
// (read its layout with ReadLayout first). left and right are the mapped
// ring areas (nil for an in-page order). The client starts at the indices
// it finds in the page, as libxenvchan does; Claim then connects it.
func NewClient(page []byte, l Layout, left, right []byte) (*Endpoint, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := checkPage(page); err != nil {
		return nil, err
	}
	e, err := newEndpoint(page, l, left, right, false)
	if err != nil {
		return nil, err
	}
	e.rdPos = atomic.LoadUint32(e.rd.cons)
	e.wrPos = atomic.LoadUint32(e.wr.prod)
	return e, nil
}

func checkPage(page []byte) error {
	if len(page) < PageSize {
		return fmt.Errorf("vchan shared page is %d bytes, want %d", len(page), PageSize)
	}
	if uintptr(unsafe.Pointer(&page[0]))%4 != 0 {
		return fmt.Errorf("vchan shared page is not 4-byte aligned")
	}
	return nil
}

func newEndpoint(page []byte, l Layout, left, right []byte, server bool) (*Endpoint, error) {
	leftData, err := ringArea(page, l.Left, left, "left")
	if err != nil {
		return nil, err
	}
	rightData, err := ringArea(page, l.Right, right, "right")
	if err != nil {
		return nil, err
	}
	leftRing := ring{cons: u32(page, offLeftCons), prod: u32(page, offLeftProd), data: leftData, mask: uint32(len(leftData) - 1)}
	rightRing := ring{cons: u32(page, offRightCons), prod: u32(page, offRightProd), data: rightData, mask: uint32(len(rightData) - 1)}
	e := &Endpoint{word: u32(page, offLiveWord), layout: l, server: server}
	if server {
		e.rd, e.wr = leftRing, rightRing
		e.ownLive, e.peerLive = byteShift(OffSrvLive), byteShift(OffCliLive)
		e.reqShift, e.ackShift = byteShift(offCliNotify), byteShift(offSrvNotify)
	} else {
		e.rd, e.wr = rightRing, leftRing
		e.ownLive, e.peerLive = byteShift(OffCliLive), byteShift(OffSrvLive)
		e.reqShift, e.ackShift = byteShift(offSrvNotify), byteShift(offCliNotify)
	}
	return e, nil
}

func ringArea(page []byte, order uint16, area []byte, name string) ([]byte, error) {
	if order < PageOrder {
		if area != nil {
			return nil, fmt.Errorf("vchan %s ring of order %d is in the page, but a separate area was given", name, order)
		}
		return inPage(page, order), nil
	}
	if want := Pages(order) * PageSize; len(area) != want {
		return nil, fmt.Errorf("vchan %s ring of order %d needs %d bytes, got %d", name, order, want, len(area))
	}
	return area[:len(area):len(area)], nil
}

func u32(page []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&page[off])) }

// Layout returns the ring orders.
func (e *Endpoint) Layout() Layout { return e.layout }

// ReadSize and WriteSize are the capacities of this side's rings in bytes.
func (e *Endpoint) ReadSize() int { return int(e.rd.size()) }

// WriteSize is the capacity of the ring this side writes.
func (e *Endpoint) WriteSize() int { return int(e.wr.size()) }

// Readable returns how many bytes wait to be read. A producer index more
// than a ring's size ahead is a protocol error (XSA-86); libxenvchan treats it
// as "nothing to read" and hangs, here it is reported.
func (e *Endpoint) Readable() (int, error) {
	prod := atomic.LoadUint32(e.rd.prod)
	n := prod - e.rdPos
	if n > e.rd.size() {
		return 0, protocolError("read ring: producer index %#x is %d bytes past consumer %#x in a %d-byte ring", prod, n, e.rdPos, e.rd.size())
	}
	return int(n), nil
}

// Writable returns how many bytes can be written without overwriting unread
// data. A consumer index behind the producer by more than the ring's size,
// or ahead of it, is a protocol error.
func (e *Endpoint) Writable() (int, error) {
	cons := atomic.LoadUint32(e.wr.cons)
	used := e.wrPos - cons
	if used > e.wr.size() {
		return 0, protocolError("write ring: consumer index %#x is %d bytes behind producer %#x in a %d-byte ring", cons, used, e.wrPos, e.wr.size())
	}
	return int(e.wr.size() - used), nil
}

// Published returns how many bytes are readable and how much space is
// writable according to the indices in the shared page alone. Unlike
// Readable and Writable it does not use this side's private positions, so
// it may be called while another goroutine reads or writes; each figure is
// 0 when the peer's index is out of range (the next Read or Write reports
// the protocol error).
func (e *Endpoint) Published() (readable, writable int) {
	rprod, rcons := atomic.LoadUint32(e.rd.prod), atomic.LoadUint32(e.rd.cons)
	if n := rprod - rcons; n <= e.rd.size() {
		readable = int(n)
	}
	wprod, wcons := atomic.LoadUint32(e.wr.prod), atomic.LoadUint32(e.wr.cons)
	if used := wprod - wcons; used <= e.wr.size() {
		writable = int(e.wr.size() - used)
	}
	return readable, writable
}

// Read copies up to len(p) available bytes into p and advances the consumer
// index. notify reports that the peer asked to hear of consumed data: the
// caller must then signal the event channel.
func (e *Endpoint) Read(p []byte) (n int, notify bool, err error) {
	avail, err := e.Readable()
	if err != nil || avail == 0 || len(p) == 0 {
		return 0, false, err
	}
	n = min(avail, len(p))
	off := e.rdPos & e.rd.mask
	if c := ringcopy.Copy(p[:n], e.rd.data[off:]); c < n {
		ringcopy.Copy(p[c:n], e.rd.data) // the split copy at the wrap
	}
	e.rdPos += uint32(n)
	atomic.SwapUint32(e.rd.cons, e.rdPos) // a full barrier: see the package comment
	return n, e.takeRequest(NotifyRead), nil
}

// Write copies as much of p as fits into the write ring and advances the
// producer index. notify reports that the peer asked to hear of new data.
func (e *Endpoint) Write(p []byte) (n int, notify bool, err error) {
	space, err := e.Writable()
	if err != nil || space == 0 || len(p) == 0 {
		return 0, false, err
	}
	n = min(space, len(p))
	off := e.wrPos & e.wr.mask
	if c := ringcopy.Copy(e.wr.data[off:], p[:n]); c < n {
		ringcopy.Copy(e.wr.data, p[c:n])
	}
	e.wrPos += uint32(n)
	atomic.SwapUint32(e.wr.prod, e.wrPos) // a full barrier: see the package comment
	return n, e.takeRequest(NotifyWrite), nil
}

// takeRequest clears bit in this side's notify byte and reports whether it
// was set, i.e. whether the peer waits for this kind of progress.
func (e *Endpoint) takeRequest(bit uint8) bool {
	mask := uint32(bit) << e.ackShift
	if atomic.LoadUint32(e.word)&mask == 0 {
		return false // common case: nobody waits; skip the locked RMW
	}
	return atomic.AndUint32(e.word, ^mask)&mask != 0
}

// RequestNotify asks the peer to signal the event channel on its next write
// (NotifyWrite) or read (NotifyRead). Re-check Readable/Writable after it and
// before blocking: the peer may have moved its index in between.
func (e *Endpoint) RequestNotify(bit uint8) {
	atomic.OrUint32(e.word, uint32(bit)<<e.reqShift)
}

// PeerLive returns the peer's live byte: LiveClosed, LiveOpen, LiveWaiting
// (a server's view of a client that has not connected yet), or whatever a
// hostile peer wrote.
func (e *Endpoint) PeerLive() uint8 { return uint8(atomic.LoadUint32(e.word) >> e.peerLive) }

// Close marks this side closed (its live byte 0) for the peer to see.
func (e *Endpoint) Close() {
	atomic.AndUint32(e.word, ^(uint32(0xff) << e.ownLive))
}

// Claim connects a client: it moves cli_live from 2 (waiting) to 1 and asks
// the server to signal new data, as libxenvchan's client_init does
// (docs/PROTOCOL.md §3). It fails if the ring is not waiting for a client (taken
// by another client, or the server is gone), so two clients never share a
// ring. The caller then notifies the event channel unconditionally.
func (e *Endpoint) Claim() error {
	if e.server {
		return fmt.Errorf("vchan: Claim on a server endpoint")
	}
	for range maxCASAttempts {
		w := atomic.LoadUint32(e.word)
		if live := uint8(w >> e.ownLive); live != LiveWaiting {
			return fmt.Errorf("%w: client live byte is %d, not %d (waiting)", ErrRingTaken, live, LiveWaiting)
		}
		if srv := uint8(w >> e.peerLive); srv != LiveOpen {
			return fmt.Errorf("%w: server live byte is %d", ErrRingTaken, srv)
		}
		nw := w&^(0xff<<e.ownLive) | uint32(LiveOpen)<<e.ownLive | uint32(NotifyWrite)<<e.reqShift
		if atomic.CompareAndSwapUint32(e.word, w, nw) {
			return nil
		}
	}
	return protocolError("the live/notify word kept changing under compare-and-swap")
}

// ErrRingTaken reports a ring that is not waiting for a client.
var ErrRingTaken = errors.New("vchan ring not available")
