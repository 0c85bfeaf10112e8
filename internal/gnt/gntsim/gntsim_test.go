package gntsim

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/evtchn/evtsim"
	"github.com/vchan-go/vchan/internal/gnt"
)

// share shares count pages from domain from to domain to, failing the test on
// error.
func share(t *testing.T, tb *Table, from, to uint16, count int, n *gnt.UnmapNotify) gnt.SharedRegion {
	t.Helper()
	r, err := tb.Sharer(from).Share(to, count, n)
	if err != nil {
		t.Fatalf("Share(%d→%d, %d pages): %v", from, to, count, err)
	}
	return r
}

// mapRefs maps refs of domain from into domain to, failing the test on error.
func mapRefs(t *testing.T, tb *Table, to, from uint16, refs []gnt.Ref, writable bool, n *gnt.UnmapNotify) gnt.Region {
	t.Helper()
	r, err := tb.Mapper(to).Map(from, refs, writable, n)
	if err != nil {
		t.Fatalf("Map(%d←%d, %v): %v", to, from, refs, err)
	}
	return r
}

// checkEmpty fails the test if any of doms still has pages granted or mapped.
func checkEmpty(t *testing.T, tb *Table, doms ...uint16) {
	t.Helper()
	for _, d := range doms {
		if g, m := tb.Granted(d), tb.Mapped(d); g != 0 || m != 0 {
			t.Errorf("domain %d: Granted = %d, Mapped = %d; want 0, 0", d, g, m)
		}
	}
}

// pending reports whether an event is pending on c, consuming it.
func pending(c evtchn.Channel) bool {
	return c.Wait(time.Unix(1, 0)) == nil
}

func TestOnlyGranteeMayMap(t *testing.T) {
	tb := NewTable(nil, 0)
	s := share(t, tb, 0, 1, 1, nil)
	defer s.Close()
	ref := s.Refs()[0]

	_, err := tb.Mapper(2).Map(0, s.Refs(), true, nil)
	if !errors.Is(err, gnt.ErrBadRef) {
		t.Fatalf("domain 2 mapping a grant for domain 1: %v, want ErrBadRef", err)
	}
	for _, want := range []string{fmt.Sprint(ref), "granted to domain 1", "domain 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The right ref, but the wrong granter.
	if _, err := tb.Mapper(1).Map(3, s.Refs(), true, nil); !errors.Is(err, gnt.ErrBadRef) {
		t.Errorf("mapping with the wrong granting domain: %v, want ErrBadRef", err)
	}
	// The granter itself is not the grantee either.
	if _, err := tb.Mapper(0).Map(0, s.Refs(), true, nil); !errors.Is(err, gnt.ErrBadRef) {
		t.Errorf("granter mapping a grant for domain 1: %v, want ErrBadRef", err)
	}
	checkEmpty(t, tb, 1, 2, 3)
}

func TestUnknownRef(t *testing.T) {
	tb := NewTable(nil, 0)
	s := share(t, tb, 0, 1, 1, nil)
	defer s.Close()
	for _, refs := range [][]gnt.Ref{{12345}, {0}, {s.Refs()[0], 12345}} {
		_, err := tb.Mapper(1).Map(0, refs, true, nil)
		if !errors.Is(err, gnt.ErrBadRef) {
			t.Errorf("Map(%v): %v, want ErrBadRef", refs, err)
		} else if !strings.Contains(err.Error(), "no such grant") {
			t.Errorf("Map(%v): error %q does not say why", refs, err)
		}
	}
	checkEmpty(t, tb, 1)
}

func TestLimit(t *testing.T) {
	tb := NewTable(nil, 4)
	sh := tb.Sharer(0)
	a, err := sh.Share(1, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sh.Share(1, 2, nil)
	if !errors.Is(err, gnt.ErrNoSpace) {
		t.Fatalf("share over the limit: %v, want ErrNoSpace", err)
	}
	for _, want := range []string{"3 pages already granted by domain 0", "limit 4", "/sys/module/xen_gntalloc/parameters/limit", "SimulatorConfig.GrantLimit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The limit is per domain.
	other, err := tb.Sharer(1).Share(0, 4, nil)
	if err != nil {
		t.Fatalf("another domain's share: %v", err)
	}
	other.Close()
	b, err := sh.Share(1, 1, nil)
	if err != nil {
		t.Fatalf("share up to the limit: %v", err)
	}
	a.Close()
	c, err := sh.Share(1, 3, nil)
	if err != nil {
		t.Fatalf("share after unsharing: %v", err)
	}
	b.Close()
	c.Close()
	if _, err := sh.Share(1, 5, nil); !errors.Is(err, gnt.ErrNoSpace) {
		t.Errorf("share of more pages than the limit: %v, want ErrNoSpace", err)
	}
	checkEmpty(t, tb, 0, 1)
}

func TestDefaultLimit(t *testing.T) {
	tb := NewTable(nil, 0)
	s := share(t, tb, 0, 1, DefaultLimit, nil)
	defer s.Close()
	_, err := tb.Sharer(0).Share(1, 1, nil)
	if !errors.Is(err, gnt.ErrNoSpace) {
		t.Fatalf("share over the default limit: %v, want ErrNoSpace", err)
	}
	if !strings.Contains(err.Error(), "limit 1024") {
		t.Errorf("error %q does not name the limit", err)
	}
}

func TestUnshareRevokesNewMapsOnly(t *testing.T) {
	tb := NewTable(nil, 0)
	s := share(t, tb, 0, 1, 2, nil)
	refs := s.Refs()
	copy(s.Bytes()[gnt.PageSize:], "still here")
	m := mapRefs(t, tb, 1, 0, refs, true, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if g := tb.Granted(0); g != 0 {
		t.Errorf("Granted(0) = %d after unshare, want 0", g)
	}
	if _, err := tb.Mapper(1).Map(0, refs, false, nil); !errors.Is(err, gnt.ErrBadRef) {
		t.Errorf("map after unshare: %v, want ErrBadRef", err)
	}
	if got := string(m.Bytes()[gnt.PageSize : gnt.PageSize+10]); got != "still here" {
		t.Errorf("existing mapping reads %q after unshare", got)
	}
	m.Bytes()[0] = 1 // must not fault: the memory is still there
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	checkEmpty(t, tb, 0, 1)
}

// notifyPair sets up what a vchan server (domain 0) and client (domain 1) do
// (docs/PROTOCOL.md §5): an event channel, the shared page granted by the server
// with notify offset 21, mapped by the client with offset 20, both live bytes
// set.
func notifyPair(t *testing.T) (tb *Table, sw *evtsim.Switch, srvCh, cliCh evtchn.Channel, srv gnt.SharedRegion, cli gnt.Region) {
	t.Helper()
	sw = evtsim.NewSwitch()
	tb = NewTable(sw, 0)
	srvCh, err := sw.Open(0).BindUnbound(1)
	if err != nil {
		t.Fatal(err)
	}
	cliCh, err = sw.Open(1).BindInterdomain(0, srvCh.LocalPort())
	if err != nil {
		t.Fatal(err)
	}
	srv = share(t, tb, 0, 1, 1, &gnt.UnmapNotify{ClearByte: true, Offset: 21, SendEvent: true, Port: uint32(srvCh.LocalPort())})
	cli = mapRefs(t, tb, 1, 0, srv.Refs(), true, &gnt.UnmapNotify{ClearByte: true, Offset: 20, SendEvent: true, Port: uint32(cliCh.LocalPort())})
	srv.Bytes()[20], srv.Bytes()[21] = 1, 1
	srv.Bytes()[22], srv.Bytes()[23] = 0xAA, 0xBB
	return
}

func TestUnmapNotify(t *testing.T) {
	tb, sw, srvCh, cliCh, srv, cli := notifyPair(t)
	// A second client mapping without notification, to watch the page
	// after the client's notifying mapping is gone.
	watch := mapRefs(t, tb, 1, 0, srv.Refs(), false, nil)

	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	page := srv.Bytes()
	if page[20] != 0 {
		t.Error("client unmap did not clear cli_live (byte 20)")
	}
	if page[21] != 1 || page[22] != 0xAA || page[23] != 0xBB {
		t.Errorf("client unmap changed other bytes: % x", page[20:24])
	}
	if !pending(srvCh) {
		t.Error("client unmap did not notify the server's channel")
	}
	if pending(cliCh) {
		t.Error("client unmap notified the client itself")
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if watch.Bytes()[21] != 0 {
		t.Error("server unshare did not clear srv_live (byte 21)")
	}
	if !pending(cliCh) {
		t.Error("server unshare did not notify the client's channel")
	}
	if pending(srvCh) {
		t.Error("server unshare notified the server itself")
	}
	watch.Close()
	srvCh.Close()
	cliCh.Close()
	checkEmpty(t, tb, 0, 1)
	if sw.Ports(0) != 0 || sw.Ports(1) != 0 {
		t.Errorf("ports leaked: %d, %d", sw.Ports(0), sw.Ports(1))
	}
}

// A process that dies closes its event channel, yet its unmap notification
// still reaches the peer: the notification holds the port, as in Linux.
func TestUnmapNotifyAfterChannelClose(t *testing.T) {
	tb, sw, srvCh, cliCh, srv, cli := notifyPair(t)
	if err := cliCh.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sw.Ports(1); got != 1 {
		t.Errorf("client port unbound while held by the notification: Ports = %d", got)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if srv.Bytes()[20] != 0 {
		t.Error("cli_live not cleared")
	}
	if !pending(srvCh) {
		t.Error("notification lost after the client closed its channel")
	}
	if got := sw.Ports(1); got != 0 {
		t.Errorf("client port still bound after the notification: Ports = %d", got)
	}
	srv.Close()
	srvCh.Close()
	checkEmpty(t, tb, 0, 1)
	if got := sw.Ports(0); got != 0 {
		t.Errorf("server ports leaked: %d", got)
	}
}

func TestNotifyValidation(t *testing.T) {
	sw := evtsim.NewSwitch()
	tb := NewTable(sw, 0)
	ch, err := sw.Open(1).BindUnbound(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	s := share(t, tb, 0, 1, 2, nil)
	defer s.Close()
	port := uint32(ch.LocalPort())

	cases := []struct {
		name     string
		writable bool
		n        gnt.UnmapNotify
	}{
		{"clear-byte on read-only map", false, gnt.UnmapNotify{ClearByte: true, Offset: 20}},
		{"offset past the end", true, gnt.UnmapNotify{ClearByte: true, Offset: 2 * gnt.PageSize}},
		{"negative offset", true, gnt.UnmapNotify{ClearByte: true, Offset: -1}},
		{"unbound port", true, gnt.UnmapNotify{SendEvent: true, Port: port + 100}},
		{"read-only with event", false, gnt.UnmapNotify{ClearByte: true, Offset: 20, SendEvent: true, Port: port}},
	}
	for _, tc := range cases {
		t.Run("map/"+tc.name, func(t *testing.T) {
			r, err := tb.Mapper(1).Map(0, s.Refs(), tc.writable, &tc.n)
			if err == nil {
				r.Close()
				t.Fatal("Map accepted the notification")
			}
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("error %v does not wrap EINVAL", err)
			}
		})
	}
	if _, err := tb.Sharer(0).Share(1, 1, &gnt.UnmapNotify{ClearByte: true, Offset: gnt.PageSize}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Share with offset past the end: %v, want EINVAL", err)
	}
	// Domain 0 has no port `port`: it belongs to domain 1.
	if _, err := tb.Sharer(0).Share(1, 1, &gnt.UnmapNotify{SendEvent: true, Port: port}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Share with another domain's port: %v, want EINVAL", err)
	}
	if _, err := NewTable(nil, 0).Sharer(0).Share(1, 1, &gnt.UnmapNotify{SendEvent: true, Port: 1}); err == nil {
		t.Error("send-event accepted by a Table without an event switch")
	}
	// Clear-byte without an event, at the last byte, is fine.
	r := mapRefs(t, tb, 1, 0, s.Refs(), true, &gnt.UnmapNotify{ClearByte: true, Offset: 2*gnt.PageSize - 1})
	s.Bytes()[2*gnt.PageSize-1] = 9
	r.Close()
	if s.Bytes()[2*gnt.PageSize-1] != 0 {
		t.Error("last byte not cleared")
	}
	if got := tb.Mapped(1); got != 0 {
		t.Errorf("Mapped(1) = %d after failed maps", got)
	}
	if got := tb.Granted(0); got != 2 {
		t.Errorf("Granted(0) = %d after failed shares, want 2", got)
	}
	// Failed maps must not have left holds on the port: closing the
	// channel unbinds it at once.
	ch.Close()
	if got := sw.Ports(1); got != 0 {
		t.Errorf("port still bound after close: failed map leaked a hold (Ports = %d)", got)
	}
}

func TestCloseIdempotent(t *testing.T) {
	tb := NewTable(nil, 0)
	sh := tb.Sharer(0)
	mp := tb.Mapper(1)
	s, err := sh.Share(1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mp.Map(0, s.Refs(), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []gnt.Region{m, s} {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("second Close: %v, want os.ErrClosed", err)
		}
		if b := r.Bytes(); b != nil {
			t.Errorf("Bytes after Close returned %d bytes, want nil", len(b))
		}
	}
	checkEmpty(t, tb, 0, 1)

	// Handles: regions outlive them, and they refuse new work once closed.
	s2, err := sh.Share(1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sh.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Sharer.Close: %v, want os.ErrClosed", err)
	}
	if _, err := sh.Share(1, 1, nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Share on closed Sharer: %v, want os.ErrClosed", err)
	}
	m2, err := mp.Map(0, s2.Refs(), true, nil)
	if err != nil {
		t.Fatalf("map a region shared through a since-closed Sharer: %v", err)
	}
	if err := mp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mp.Map(0, s2.Refs(), true, nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Map on closed Mapper: %v, want os.ErrClosed", err)
	}
	m2.Bytes()[0] = 1
	if s2.Bytes()[0] != 1 {
		t.Error("region stopped working after its handle closed")
	}
	m2.Close()
	s2.Close()
	checkEmpty(t, tb, 0, 1)
}

func TestSelfGrant(t *testing.T) {
	tb := NewTable(nil, 0)
	s := share(t, tb, 4, 4, 2, nil)
	m := mapRefs(t, tb, 4, 4, s.Refs(), true, nil)
	m.Bytes()[gnt.PageSize+1] = 'x'
	if s.Bytes()[gnt.PageSize+1] != 'x' {
		t.Error("self-mapped page is not the shared page")
	}
	if tb.Granted(4) != 2 || tb.Mapped(4) != 2 {
		t.Errorf("Granted, Mapped = %d, %d; want 2, 2", tb.Granted(4), tb.Mapped(4))
	}
	m.Close()
	s.Close()
	checkEmpty(t, tb, 4)
}

func TestRefsDistinctAndNonZero(t *testing.T) {
	tb := NewTable(nil, 0)
	seen := map[gnt.Ref]bool{}
	var regions []gnt.SharedRegion
	for i := range 10 {
		s := share(t, tb, 0, uint16(1+i%2), 1+i%3, nil)
		regions = append(regions, s)
		for _, ref := range s.Refs() {
			if ref < FirstRef {
				t.Errorf("ref %d below %d (Xen-reserved, or zero)", ref, FirstRef)
			}
			if seen[ref] {
				t.Errorf("ref %d handed out twice", ref)
			}
			seen[ref] = true
		}
	}
	refs := regions[0].Refs()
	refs[0] = 0
	if regions[0].Refs()[0] == 0 {
		t.Error("Refs returns the region's own slice")
	}
	for _, s := range regions {
		s.Close()
	}
	checkEmpty(t, tb, 0)
}

func TestInvalidCounts(t *testing.T) {
	tb := NewTable(nil, 0)
	for _, n := range []int{0, -1} {
		if _, err := tb.Sharer(0).Share(1, n, nil); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Share(%d pages): %v, want EINVAL", n, err)
		}
	}
	if _, err := tb.Sharer(0).Share(1, int(^uint(0)>>1), nil); !errors.Is(err, gnt.ErrNoSpace) {
		t.Errorf("Share(MaxInt pages): %v, want ErrNoSpace", err)
	}
	for _, refs := range [][]gnt.Ref{nil, {}, make([]gnt.Ref, MaxMapPages+1)} {
		if _, err := tb.Mapper(1).Map(0, refs, true, nil); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Map(%d refs): %v, want EINVAL", len(refs), err)
		}
	}
	checkEmpty(t, tb, 0, 1)
}

func TestCloseDomain(t *testing.T) {
	tb, sw, srvCh, cliCh, srv, _ := notifyPair(t)
	// The client (domain 1) also shares a page with the server.
	back := share(t, tb, 1, 0, 1, nil)
	copy(back.Bytes(), "from client")
	peerView := mapRefs(t, tb, 0, 1, back.Refs(), false, nil)
	sh := tb.Sharer(1)

	tb.CloseDomain(1)
	if srv.Bytes()[20] != 0 {
		t.Error("dying client did not clear cli_live")
	}
	if !pending(srvCh) {
		t.Error("dying client did not notify the server")
	}
	checkEmpty(t, tb, 1)
	if got := string(peerView.Bytes()[:11]); got != "from client" {
		t.Errorf("server's mapping of the dead client's page reads %q", got)
	}
	if _, err := sh.Share(0, 1, nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Share by dead domain: %v, want os.ErrClosed", err)
	}
	// The dead domain's objects may still touch their memory until they
	// close it: the first Close unmaps, the second reports ErrClosed.
	if back.Bytes() != nil {
		t.Error("Bytes of a dead domain's region is not nil")
	}
	if err := back.Close(); err != nil {
		t.Errorf("first Close of dead domain's region: %v, want nil", err)
	}
	if err := back.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close of dead domain's region: %v, want os.ErrClosed", err)
	}
	if _, err := tb.Mapper(0).Map(1, back.Refs(), false, nil); !errors.Is(err, gnt.ErrBadRef) {
		t.Errorf("map of dead domain's grant: %v, want ErrBadRef", err)
	}
	sw.CloseDomain(1)
	if err := cliCh.Notify(); !errors.Is(err, evtchn.ErrClosed) {
		t.Errorf("dead client's channel: %v", err)
	}

	peerView.Close()
	srv.Close()
	srvCh.Close()
	checkEmpty(t, tb, 0, 1)
	tb.CloseDomain(99) // unknown: no-op
}

func TestConcurrent(t *testing.T) {
	sw := evtsim.NewSwitch()
	tb := NewTable(sw, 64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			from, to := uint16(g%3), uint16((g+1)%3)
			for i := range 50 {
				s, err := tb.Sharer(from).Share(to, 1+i%4, nil)
				if err != nil {
					if errors.Is(err, gnt.ErrNoSpace) {
						continue
					}
					t.Error(err)
					return
				}
				s.Bytes()[0] = byte(i)
				m, err := tb.Mapper(to).Map(from, s.Refs(), i%2 == 0, nil)
				if err != nil {
					t.Error(err)
					s.Close()
					return
				}
				if m.Bytes()[0] != byte(i) {
					t.Error("mapping does not see the share")
				}
				_ = tb.Granted(from) + tb.Mapped(to)
				if i%2 == 0 {
					s.Close()
					m.Close()
				} else {
					m.Close()
					s.Close()
				}
			}
		})
	}
	wg.Wait()
	checkEmpty(t, tb, 0, 1, 2)
}

// A map may draw its pages from at most MaxMapShares shares.
func TestMapMaxShares(t *testing.T) {
	tb := NewTable(nil, 0)
	var refs []gnt.Ref
	var shares []gnt.SharedRegion
	for range MaxMapShares + 1 {
		s := share(t, tb, 0, 1, 1, nil)
		shares = append(shares, s)
		refs = append(refs, s.Refs()[0])
	}
	if _, err := tb.Mapper(1).Map(0, refs, true, nil); !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "shares") {
		t.Errorf("Map of pages of %d shares = %v, want EINVAL", len(refs), err)
	}
	for _, s := range shares {
		s.Close()
	}
	checkEmpty(t, tb, 0, 1)
}
