package vchan

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/ring"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// hookedDomain returns a second Host for simulated domain domid whose
// xenstore reads and grant maps first call the given hooks (nil: none), so
// a test can make another party act at an exact point of a Dial.
func hookedDomain(sim *Simulator, domid uint16, onRead func(path string), onMap func(refs []gnt.Ref)) *Host {
	sim.Domain(domid) // introduce the domain
	return &Host{
		name: fmt.Sprintf("hooked simulated dom%d", domid),
		openXS: func() (xenstore.Client, error) {
			return hookedXS{sim.store.Connect(domid), onRead}, nil
		},
		openSharer: func() (gnt.Sharer, error) { return sim.grants.Sharer(domid), nil },
		openMapper: func() (gnt.Mapper, error) { return hookedMapper{sim.grants.Mapper(domid), onMap}, nil },
		openEvtchn: func() (evtchn.Device, error) { return sim.events.Open(domid), nil },
		noSpin:     true,
	}
}

type hookedXS struct {
	xenstore.Client
	onRead func(path string)
}

func (x hookedXS) Read(path string) ([]byte, error) {
	if x.onRead != nil {
		x.onRead(path)
	}
	return x.Client.Read(path)
}

type hookedMapper struct {
	gnt.Mapper
	onMap func(refs []gnt.Ref)
}

func (m hookedMapper) Map(peer uint16, refs []gnt.Ref, writable bool, notify *gnt.UnmapNotify) (gnt.Region, error) {
	if m.onMap != nil {
		m.onMap(refs)
	}
	return m.Mapper.Map(peer, refs, writable, notify)
}

// roundTrip checks that srv and cli still talk both ways.
func roundTrip(t *testing.T, srv, cli *Conn) {
	t.Helper()
	for _, d := range [2]struct {
		name string
		w, r *Conn
	}{{"client to server", cli, srv}, {"server to client", srv, cli}} {
		if _, err := d.w.Write([]byte("ping")); err != nil {
			t.Fatalf("%s: Write: %v", d.name, err)
		}
		d.r.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(d.r, b); err != nil || string(b) != "ping" {
			t.Fatalf("%s: Read = %q, %v; want \"ping\"", d.name, b, err)
		}
	}
}

// TestDialTornKeysSpareLiveRing: a Dial that reads ring-ref of the ring the
// Listener is accepting and, after the Listener re-published, the
// event-channel of the next ring, must not touch the accepted connection.
// (Such a torn pair binds the fresh port, so it got as far as mapping the
// accepted ring's page with the clear-on-unmap of cli_live; the failed
// claim then unmapped it and closed the live connection under its peers:
// the EOF and broken pipe of guesttest.TestConnAcrossDomains through
// xenlab/vchanpeer's relay, which dials the next ring while the test
// accepts the last one.)
func TestDialTornKeysSpareLiveRing(t *testing.T) {
	for _, size := range []int{0, 65536} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			sim := NewSimulator()
			ln, err := Listen(1, "torn", &Config{Host: sim.Domain(0), ReadBufferSize: size, WriteBufferSize: size})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ln.SetDeadline(time.Now().Add(5 * time.Second))
			c1, err := Dial(0, "torn", &Config{Host: sim.Domain(1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()

			// The second client reads ring-ref while the first client's
			// ring is still the published one; the Listener accepts that
			// client and re-publishes before the second client reads
			// event-channel.
			var (
				once      sync.Once
				s1        *Conn
				acceptErr error
			)
			h := hookedDomain(sim, 1, func(path string) {
				if strings.HasSuffix(path, "/event-channel") {
					once.Do(func() { s1, acceptErr = ln.AcceptVchan() })
				}
			}, nil)
			c2, err := Dial(0, "torn", &Config{Host: h})
			if acceptErr != nil || s1 == nil {
				t.Fatalf("accept inside the second Dial: %v (hook ran: %t)", acceptErr, s1 != nil)
			}
			defer s1.Close()
			if err != nil {
				t.Fatalf("second Dial: %v", err)
			}
			defer c2.Close()
			if live := s1.ep.PeerLive(); live != ring.LiveOpen {
				t.Errorf("the accepted ring's cli_live is %d after the second Dial, want %d (open)", live, ring.LiveOpen)
			}
			roundTrip(t, s1, c1)
			s2, err := ln.AcceptVchan()
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			roundTrip(t, s2, c2)
		})
	}
}

// TestDialRingWithdrawnWhileMapping: a Dial that finds the ring of a client
// that has already closed (still published: the server has not accepted it
// yet) binds its port and maps its page; if the server accepts and closes
// that connection before the Dial maps the data rings, their grants are
// gone. That ring was stale, like one a client took: the Dial must wait for
// the fresh ring the server publishes, not fail.
func TestDialRingWithdrawnWhileMapping(t *testing.T) {
	sim := NewSimulator()
	ln, err := Listen(1, "gone", &Config{Host: sim.Domain(0), ReadBufferSize: 8192, WriteBufferSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c1, err := Dial(0, "gone", &Config{Host: sim.Domain(1)})
	if err != nil {
		t.Fatal(err)
	}
	c1.Close() // its ring stays published until Accept

	var (
		maps      int
		acceptErr error
		s1        *Conn
	)
	h := hookedDomain(sim, 1, nil, func(refs []gnt.Ref) {
		// The second Map of the first attempt is a data ring: the page
		// is mapped by now. Accept and close the closed client's ring.
		if maps++; maps == 2 {
			if s1, acceptErr = ln.AcceptVchan(); acceptErr == nil {
				s1.Close()
			}
		}
	})
	c2, err := Dial(0, "gone", &Config{Host: h})
	if acceptErr != nil || s1 == nil {
		t.Fatalf("accept inside the second Dial: %v (hook ran: %t)", acceptErr, s1 != nil)
	}
	if err != nil {
		t.Fatalf("Dial while the stale ring it found was withdrawn: %v", err)
	}
	defer c2.Close()
	s2, err := ln.AcceptVchan()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	roundTrip(t, s2, c2)
}
