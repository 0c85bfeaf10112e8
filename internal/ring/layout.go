// Package ring is the vchan wire protocol over the shared memory: the page
// header, the ring orders and their placement, the free-running indices, the
// notify bits and the live bytes (docs/PROTOCOL.md §1-§6). It is pure code over
// byte slices: it knows nothing of grants, event channels or xenstore, and
// never blocks. Everything the peer can write is validated before use.
package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets in the shared page, struct vchan_interface (docs/PROTOCOL.md §1.2).
const (
	offLeftCons   = 0  // left ring: the client writes, the server reads
	offLeftProd   = 4  //
	offRightCons  = 8  // right ring: the server writes, the client reads
	offRightProd  = 12 //
	offLeftOrder  = 16 // u16
	offRightOrder = 18 // u16
	offLiveWord   = 20 // the 32-bit word holding the four single-byte fields below
	OffCliLive    = 20 // u8: the client's liveness; the client's unmap notify clears it
	OffSrvLive    = 21 // u8: the server's liveness; the server's unmap notify clears it
	offCliNotify  = 22 // u8: request bits the client honours (set by the server)
	offSrvNotify  = 23 // u8: request bits the server honours (set by the client)
	offGrants     = 24 // u32 grant refs: the left ring's pages, then the right ring's

	// HeaderSize is sizeof(struct vchan_interface) without the grant list.
	HeaderSize = offGrants
)

// Ring orders: a ring holds 2^order bytes (docs/PROTOCOL.md §1.3).
const (
	MinOrder  = 10 // 1 KiB, inside the shared page at offset 1024
	MaxOrder  = 20 // 1 MiB, 256 separately granted pages
	PageOrder = 12 // orders from here on live in their own pages
	PageSize  = 1 << PageOrder
)

// Notify request bits (docs/PROTOCOL.md §4).
const (
	NotifyWrite = 0x1 // "notify me when you produce"
	NotifyRead  = 0x2 // "notify me when you consume"
)

// Live byte values (docs/PROTOCOL.md §3).
const (
	LiveClosed  = 0 // exited, closed or crashed
	LiveOpen    = 1 // connected
	LiveWaiting = 2 // cli_live only: the server waits for a client
)

// ErrProtocol is wrapped by every error that reports a peer breaking the
// protocol: corrupt indices, impossible orders, a grant list that does not
// fit the page, an unexpected live byte.
var ErrProtocol = errors.New("vchan protocol violation")

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// Layout is the pair of ring orders of one vchan. Left is the ring the
// client writes and the server reads; Right the other way round.
type Layout struct {
	Left, Right uint16
}

// ServerLayout picks the orders from the server's minimum sizes exactly as
// libxenvchan_server_init does (docs/PROTOCOL.md §1.4), so that the same arguments
// give the same page as the C server. readMin sizes the server's read ring
// (left), writeMin its write ring (right).
func ServerLayout(readMin, writeMin int) (Layout, error) {
	const maxSize = 1 << MaxOrder
	if readMin < 0 || writeMin < 0 || readMin > maxSize || writeMin > maxSize {
		return Layout{}, fmt.Errorf("vchan ring sizes %d/%d out of range: each must be 0..%d bytes", readMin, writeMin, maxSize)
	}
	l := Layout{Left: pageOrderFor(readMin), Right: pageOrderFor(writeMin)}
	switch {
	case readMin <= 1024 && writeMin <= 2048:
		l.Left, l.Right = 10, 11
	case readMin <= 2048 && writeMin <= 1024:
		l.Left, l.Right = 11, 10
	case readMin <= 2048:
		l.Left = 11
	case writeMin <= 2048:
		l.Right = 11
	}
	return l, nil
}

// pageOrderFor is libxenvchan's min_order: the smallest order ≥ 12 whose ring
// holds size bytes.
func pageOrderFor(size int) uint16 {
	order := uint16(PageOrder)
	for 1<<order < size {
		order++
	}
	return order
}

// Pages is how many separately granted pages a ring of this order needs:
// 0 for the in-page orders 10 and 11.
func Pages(order uint16) int {
	if order < PageOrder {
		return 0
	}
	return 1 << (order - PageOrder)
}

// Grants is the length of the grant list: the left ring's pages, then the
// right ring's.
func (l Layout) Grants() int { return Pages(l.Left) + Pages(l.Right) }

// grantCapacity is how many refs fit between the header and the first
// in-page ring (or the end of the page).
func (l Layout) grantCapacity() int {
	end := PageSize
	for _, o := range [2]uint16{l.Left, l.Right} {
		if o < PageOrder && 1<<o < end {
			end = 1 << o // an in-page ring of order o starts at offset 2^o
		}
	}
	return (end - offGrants) / 4
}

// Validate checks orders that came from the shared page, where the peer
// wrote them (docs/PROTOCOL.md §1.3): each within 10..20, the in-page orders 10 and
// 11 only as a pair of different orders, and a grant list that fits.
func (l Layout) Validate() error {
	for _, o := range [2]uint16{l.Left, l.Right} {
		if o < MinOrder || o > MaxOrder {
			return protocolError("ring order %d outside %d..%d", o, MinOrder, MaxOrder)
		}
	}
	if l.Left < PageOrder && l.Right < PageOrder && l.Left == l.Right {
		return protocolError("both rings claim in-page order %d", l.Left)
	}
	if n, c := l.Grants(), l.grantCapacity(); n > c {
		return protocolError("orders %d/%d need %d grant refs but only %d fit in the page", l.Left, l.Right, n, c)
	}
	return nil
}

// String describes the layout as ring sizes, e.g. "left 1024 B, right 2048 B".
func (l Layout) String() string {
	return fmt.Sprintf("left %d B, right %d B", 1<<l.Left, 1<<l.Right)
}

// ReadLayout reads and validates the orders and the grant list from a shared
// page the peer (a server) wrote. Each value is read once.
func ReadLayout(page []byte) (Layout, []uint32, error) {
	if len(page) < PageSize {
		return Layout{}, nil, fmt.Errorf("vchan shared page is %d bytes, want %d", len(page), PageSize)
	}
	l := Layout{
		Left:  binary.NativeEndian.Uint16(page[offLeftOrder:]),
		Right: binary.NativeEndian.Uint16(page[offRightOrder:]),
	}
	if err := l.Validate(); err != nil {
		return Layout{}, nil, err
	}
	refs := make([]uint32, l.Grants())
	for i := range refs {
		refs[i] = binary.NativeEndian.Uint32(page[offGrants+4*i:])
	}
	return l, refs, nil
}

// inPage returns the in-page ring area of an order below 12.
func inPage(page []byte, order uint16) []byte {
	return page[1<<order : 2<<order : 2<<order]
}
