//go:build linux

package simdaemon

import (
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/gnt/gntsim"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

// The grant requests. The daemon's grant tables are a gntsim.Table: it
// grants, maps, counts against the limits and fires unmap notifications
// exactly as the in-process simulator does, and maps every region in the
// daemon too, through which it clears notification bytes. What the daemon
// adds is passing each region's memfds to the process (gntsim.Files), which
// maps them itself, and numbering the regions of a connection so that the
// process can name them in unmap. Errors from the Table wrap the sentinels
// that simproto.StatusOf turns into status codes.

// share allocates count pages and grants them to peer.
func (c *conn) share(peer uint16, count int, n gnt.UnmapNotify) (simproto.Msg, []int, error) {
	if count > simproto.MaxSharePages {
		return nil, nil, simproto.Errorf(simproto.StInval, "vchan-simd: share %d pages: at most %d at once", count, simproto.MaxSharePages)
	}
	r, err := c.sharer.Share(peer, count, &n)
	if err != nil {
		return nil, nil, err
	}
	id, fds, _, err := c.addRegion(r)
	if err != nil {
		return nil, nil, err
	}
	refs := r.Refs()
	reply := simproto.Msg(nil).U32(simproto.StOK, id)
	for _, ref := range refs {
		reply = reply.U32(uint32(ref))
	}
	c.d.logf("conn %d dom%d: share %d pages to dom%d: region %d, refs %v", c.id, c.domid, count, peer, id, refs)
	return reply, fds, nil
}

// mapRefs maps pages that peer granted to this domain. The reply names
// them as runs of pages in the memfds passed with it.
func (c *conn) mapRefs(peer uint16, refs []gnt.Ref, writable bool, n gnt.UnmapNotify) (simproto.Msg, []int, error) {
	r, err := c.mapper.Map(peer, refs, writable, &n)
	if err != nil {
		return nil, nil, err
	}
	id, fds, segs, err := c.addRegion(r)
	if err != nil {
		return nil, nil, err
	}
	reply := simproto.Msg(nil).U32(simproto.StOK, id, uint32(len(segs)))
	for _, s := range segs {
		reply = reply.U32(uint32(s.File), uint32(s.Page), uint32(s.Pages))
	}
	c.d.logf("conn %d dom%d: map refs %v of dom%d (writable %v): region %d", c.id, c.domid, refs, peer, writable, id)
	return reply, fds, nil
}

// addRegion numbers r, a region just shared or mapped through the
// connection (never 0, and none still in use after a wrap-around), and
// returns where its memory lives, to pass to the process. If that fails, it
// closes r instead: only reopening a memfd read-only can fail (out of
// descriptors), and r's notification, if any, then fires as on any unmap.
func (c *conn) addRegion(r gnt.Region) (uint32, []int, []gntsim.Segment, error) {
	fds, segs, err := gntsim.Files(r)
	if err != nil {
		_ = r.Close()
		return 0, nil, nil, err
	}
	for {
		c.nextRegion++
		if _, used := c.regions[c.nextRegion]; !used && c.nextRegion != 0 {
			break
		}
	}
	c.regions[c.nextRegion] = r
	return c.nextRegion, fds, segs, nil
}

// unmap closes a region the process has unmapped.
func (c *conn) unmap(id uint32) error {
	if c.regions[id] == nil {
		return simproto.Errorf(simproto.StInval, "vchan-simd: unmap region %d: no such region on this connection", id)
	}
	if err := c.closeRegion(id); err != nil {
		return err
	}
	c.d.logf("conn %d dom%d: unmap region %d", c.id, c.domid, id)
	return nil
}

// closeRegion closes region id of the connection: a share's grants are
// revoked, then the unmap notification fires, in the kernel's order: clear
// the byte, then notify through the held local port (gntsim does both).
func (c *conn) closeRegion(id uint32) error {
	r := c.regions[id]
	delete(c.regions, id)
	return r.Close()
}
