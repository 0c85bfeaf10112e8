package ring

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzReadLayout feeds arbitrary shared pages to the client's parser: it
// must never panic, and whatever it accepts must be a layout whose grant list
// fits before the first in-page ring.
func FuzzReadLayout(f *testing.F) {
	for _, l := range []Layout{{10, 11}, {11, 10}, {12, 12}, {20, 20}, {10, 20}, {9, 9}, {11, 11}} {
		page := make([]byte, PageSize)
		binary.NativeEndian.PutUint16(page[16:], l.Left)
		binary.NativeEndian.PutUint16(page[18:], l.Right)
		f.Add(page[:64])
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		page := make([]byte, PageSize)
		copy(page, head)
		l, refs, err := ReadLayout(page)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ReadLayout error %v is not an ErrProtocol", err)
			}
			return
		}
		// An independent statement of the rule (docs/PROTOCOL.md §1.3): the
		// list ends before any in-page ring, and inside the page.
		end := offGrants + 4*len(refs)
		limit := PageSize
		if l.Left == 11 || l.Right == 11 {
			limit = 2048
		}
		if l.Left == 10 || l.Right == 10 {
			limit = 1024
		}
		if len(refs) != Pages(l.Left)+Pages(l.Right) || end > limit {
			t.Fatalf("accepted %v with %d refs ending at %d (limit %d)", l, len(refs), end, limit)
		}
		var left, right []byte
		if n := Pages(l.Left); n > 0 {
			left = make([]byte, n*PageSize)
		}
		if n := Pages(l.Right); n > 0 {
			right = make([]byte, n*PageSize)
		}
		if _, err := NewClient(page, l, left, right); err != nil {
			t.Fatalf("NewClient rejected a layout ReadLayout accepted: %v", err)
		}
	})
}

// FuzzHostilePeer drives a server endpoint while a hostile client rewrites
// any byte of the shared header between operations. Whatever it writes, the
// endpoint must not panic or touch memory outside its rings, must never
// report more than a ring holds, and must report trouble as ErrProtocol.
func FuzzHostilePeer(f *testing.F) {
	f.Add([]byte{0, 10, 1, 20, 2, 4, 0xff, 3, 8, 0x7f})
	f.Add([]byte{2, 4, 1, 1, 0, 200, 2, 0, 0, 0, 0, 5})
	f.Add([]byte{2, 12, 0xff, 0xff, 0xff, 0x7f, 0, 100, 1, 100})
	f.Fuzz(func(t *testing.T, script []byte) {
		for _, l := range []Layout{{10, 11}, {12, 13}} {
			srv, _, page := pair(t, l)
			buf := make([]byte, 3*PageSize)
			for i := 0; i+2 < len(script); i += 3 {
				op, a, b := script[i], int(script[i+1]), int(script[i+2])
				switch op % 5 {
				case 0: // the peer writes byte b at header offset a
					page[a%(offGrants+8)] = byte(b)
				case 1: // the peer writes a 32-bit index
					off := 4 * (a % 4)
					binary.NativeEndian.PutUint32(page[off:], uint32(b)<<(8*(a%4))|uint32(a))
				case 2:
					n, _, err := srv.Read(buf[:(a*b)%len(buf)])
					check(t, n, err, srv.ReadSize(), (a*b)%len(buf))
				case 3:
					n, _, err := srv.Write(buf[:(a*b)%len(buf)])
					check(t, n, err, srv.WriteSize(), (a*b)%len(buf))
				case 4:
					if n, err := srv.Readable(); n > srv.ReadSize() || (err != nil && !errors.Is(err, ErrProtocol)) {
						t.Fatalf("Readable = %d, %v", n, err)
					}
					if n, err := srv.Writable(); n > srv.WriteSize() || (err != nil && !errors.Is(err, ErrProtocol)) {
						t.Fatalf("Writable = %d, %v", n, err)
					}
					srv.RequestNotify(uint8(a % 4))
					_ = srv.PeerLive()
				}
			}
		}
	})
}

func check(t *testing.T, n int, err error, size, asked int) {
	t.Helper()
	if n < 0 || n > size || n > asked {
		t.Fatalf("moved %d bytes (asked %d, ring %d)", n, asked, size)
	}
	if err != nil && !errors.Is(err, ErrProtocol) {
		t.Fatalf("error %v is not an ErrProtocol", err)
	}
	if err != nil && n != 0 {
		t.Fatalf("moved %d bytes and failed", n)
	}
}
