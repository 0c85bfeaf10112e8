// Package gnt defines how the vchan engine shares memory pages with another
// domain and maps pages another domain shared with it: Xen grant tables, as
// the Linux gntalloc (share) and gntdev (map) devices expose them.
//
// The engine depends on the Sharer and Mapper interfaces only; the real
// devices and the simulated host both implement them.
package gnt

import "errors"

// PageSize is the size of one granted page. The vchan protocol fixes it at
// 4096 bytes (docs/PROTOCOL.md §1.3).
const PageSize = 4096

// Ref is a grant reference: the number by which a domain names a page it
// granted, and by which the grantee asks to map it.
type Ref uint32

// UnmapNotify says what happens when the last local user of a mapping goes
// away: on Close, or when the process dies. This is how a vchan peer learns
// that its partner crashed (docs/PROTOCOL.md §5).
type UnmapNotify struct {
	// ClearByte, if set, asks for the byte at Offset in the mapping (counted
	// from its first page) to be set to 0.
	ClearByte bool
	Offset    int
	// SendEvent, if set, asks for a notification on the local event channel
	// Port.
	SendEvent bool
	Port      uint32
}

// Region is a run of granted pages mapped into this process.
type Region interface {
	// Bytes is the mapped memory, len = pages × PageSize. It must not be
	// used after Close.
	Bytes() []byte
	// Close unmaps the pages and fires the unmap notification, if any.
	Close() error
}

// SharedRegion is a Region this domain allocated and granted to another.
type SharedRegion interface {
	Region
	// Refs are the grant references of the pages, in page order.
	Refs() []Ref
}

// Sharer allocates zeroed pages and grants them to one other domain, like
// /dev/xen/gntalloc.
type Sharer interface {
	// Share allocates count pages, grants each one writable to domain
	// peer, and maps them here. The notification, if any, refers to the
	// returned mapping.
	Share(peer uint16, count int, notify *UnmapNotify) (SharedRegion, error)
	// Close releases the handle. Regions already shared stay valid until
	// they are closed.
	Close() error
}

// Mapper maps pages that another domain granted to this one, like
// /dev/xen/gntdev.
type Mapper interface {
	// Map maps the pages named by refs, granted by domain peer, into one
	// contiguous region, in order. A read-only region (writable false) must
	// not be written: the memory is protected against it.
	Map(peer uint16, refs []Ref, writable bool, notify *UnmapNotify) (Region, error)
	// Close releases the handle. Regions already mapped stay valid until
	// they are closed.
	Close() error
}

// ErrNoSpace reports that the grant limit was reached. Errors that wrap it say
// which limit and how to raise it.
var ErrNoSpace = errors.New("grant limit reached")

// ErrBadRef reports a grant reference that does not name a page granted to
// this domain by the given peer.
var ErrBadRef = errors.New("invalid grant reference")
