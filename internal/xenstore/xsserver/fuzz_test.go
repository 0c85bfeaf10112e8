package xsserver

import (
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore/xssim"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// FuzzHandle feeds arbitrary requests, as dom0 and as an unprivileged
// domain, to the request handler: it must answer every one with a
// well-formed reply and never panic.
func FuzzHandle(f *testing.F) {
	seeds := []struct {
		t  uint32
		tx uint32
		p  string
	}{
		{uint32(xswire.Write), 0, "/a\x00v"},
		{uint32(xswire.Read), 0, "/a\x00"},
		{uint32(xswire.SetPerms), 0, "/a\x00n0\x00r1\x00"},
		{uint32(xswire.Watch), 0, "/a\x00t\x00"},
		{uint32(xswire.Watch), 0, "/a\x00t\x007\x00"},
		{uint32(xswire.TransactionStart), 0, "\x00"},
		{uint32(xswire.TransactionEnd), 1, "T\x00"},
		{uint32(xswire.GetDomainPath), 0, "65535\x00"},
		{uint32(xswire.Introduce), 0, "3\x001\x002\x00"},
		{uint32(xswire.Release), 0, "3\x00"},
		{uint32(xswire.ResetWatches), 0, ""},
		{uint32(xswire.Directory), 0, "/\x00"},
		{99, 0, "x"},
	}
	for _, s := range seeds {
		f.Add(s.t, s.tx, []byte(s.p), false)
		f.Add(s.t, s.tx, []byte(s.p), true)
	}
	store := xssim.NewStore(xssim.DefaultLimits())
	_ = store.IntroduceDomain(1)
	srv := New(store, nil)
	conns := [2]*conn{}
	for i, domid := range []uint16{0, 1} {
		c := &conn{s: srv, watches: map[[2]string]struct{}{}, txs: map[uint32]struct{}{}}
		c.sess = store.NewSession(domid, nil)
		conns[i] = c
	}
	f.Fuzz(func(t *testing.T, typ, tx uint32, payload []byte, unprivileged bool) {
		c := conns[0]
		if unprivileged {
			c = conns[1]
		}
		if xswire.Type(typ) == xswire.Release {
			return // releasing dom1 would end the fixture's session
		}
		rt, rp := c.handle(xswire.Message{Type: xswire.Type(typ), TxID: tx, Payload: payload})
		switch rt {
		case xswire.Error:
			if _, err := xswire.ExactStrings(rp, 1); err != nil {
				t.Fatalf("error reply %q", rp)
			}
		case xswire.Type(typ):
		default:
			t.Fatalf("reply type %s to %s", rt, xswire.Type(typ))
		}
	})
}
