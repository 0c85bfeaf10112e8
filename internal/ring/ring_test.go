package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// pair builds a connected server/client pair over plain memory: the page and
// ring areas are shared slices, as a mapping of the same pages would be.
func pair(t testing.TB, l Layout) (srv, cli *Endpoint, page []byte) {
	t.Helper()
	page = make([]byte, PageSize)
	var left, right []byte
	if n := Pages(l.Left); n > 0 {
		left = make([]byte, n*PageSize)
	}
	if n := Pages(l.Right); n > 0 {
		right = make([]byte, n*PageSize)
	}
	refs := make([]uint32, l.Grants())
	for i := range refs {
		refs[i] = uint32(100 + i)
	}
	srv, err := NewServer(page, l, left, right, refs)
	if err != nil {
		t.Fatalf("NewServer(%v): %v", l, err)
	}
	gotL, gotRefs, err := ReadLayout(page)
	if err != nil || gotL != l || len(gotRefs) != len(refs) {
		t.Fatalf("ReadLayout = %v, %d refs, %v; want %v, %d refs", gotL, len(gotRefs), err, l, len(refs))
	}
	for i := range refs {
		if gotRefs[i] != refs[i] {
			t.Fatalf("grant %d = %d, want %d", i, gotRefs[i], refs[i])
		}
	}
	cli, err = NewClient(page, l, left, right)
	if err != nil {
		t.Fatalf("NewClient(%v): %v", l, err)
	}
	if err := cli.Claim(); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return srv, cli, page
}

func TestHeaderOffsets(t *testing.T) {
	l := Layout{Left: 12, Right: 13}
	srv, cli, page := pair(t, l)
	if got := binary.NativeEndian.Uint16(page[16:]); got != 12 {
		t.Errorf("left_order at 16 = %d, want 12", got)
	}
	if got := binary.NativeEndian.Uint16(page[18:]); got != 13 {
		t.Errorf("right_order at 18 = %d, want 13", got)
	}
	for i, want := range []uint32{100, 101, 102} {
		if got := binary.NativeEndian.Uint32(page[24+4*i:]); got != want {
			t.Errorf("grants[%d] at %d = %d, want %d", i, 24+4*i, got, want)
		}
	}
	// After Claim: cli_live 1, srv_live 1, cli_notify WRITE (server's request),
	// srv_notify WRITE (client's request).
	if got := page[20:24]; !bytes.Equal(got, []byte{1, 1, NotifyWrite, NotifyWrite}) {
		t.Errorf("bytes 20..23 = %v, want [1 1 1 1]", got)
	}
	// The client writes left: left.prod at 4; the server reads it: left.cons at 0.
	if _, _, err := cli.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if got := binary.NativeEndian.Uint32(page[4:]); got != 3 {
		t.Errorf("left.prod at 4 = %d, want 3", got)
	}
	buf := make([]byte, 8)
	if n, _, _ := srv.Read(buf); n != 3 {
		t.Fatalf("server read %d bytes, want 3", n)
	}
	if got := binary.NativeEndian.Uint32(page[0:]); got != 3 {
		t.Errorf("left.cons at 0 = %d, want 3", got)
	}
	// The server writes right: right.prod at 12, right.cons at 8.
	srv.Write([]byte("hello"))
	if got := binary.NativeEndian.Uint32(page[12:]); got != 5 {
		t.Errorf("right.prod at 12 = %d, want 5", got)
	}
	cli.Read(buf)
	if got := binary.NativeEndian.Uint32(page[8:]); got != 5 {
		t.Errorf("right.cons at 8 = %d, want 5", got)
	}
	// Close clears only the closing side's live byte.
	cli.Close()
	if page[20] != 0 || page[21] != 1 {
		t.Errorf("after client Close: cli_live %d srv_live %d, want 0 1", page[20], page[21])
	}
	srv.Close()
	if page[21] != 0 {
		t.Errorf("after server Close: srv_live %d, want 0", page[21])
	}
}

func TestInPageRingPlacement(t *testing.T) {
	_, cli, page := pair(t, Layout{Left: 10, Right: 11})
	cli.Write([]byte{0xAA})
	if page[1024] != 0xAA {
		t.Errorf("order-10 left ring does not start at offset 1024")
	}
	srv, _, page := pair(t, Layout{Left: 11, Right: 10})
	srv.Write([]byte{0xBB})
	if page[1024] != 0xBB {
		t.Errorf("order-10 right ring does not start at offset 1024")
	}
	_, cli, page = pair(t, Layout{Left: 11, Right: 10})
	cli.Write([]byte{0xCC})
	if page[2048] != 0xCC {
		t.Errorf("order-11 left ring does not start at offset 2048")
	}
}

// TestServerLayout checks the order choice against libxenvchan_server_init's
// rule (docs/PROTOCOL.md §1.4), written out case by case.
func TestServerLayout(t *testing.T) {
	for _, tc := range []struct {
		read, write int
		left, right uint16
	}{
		{0, 0, 10, 11},
		{1024, 2048, 10, 11},
		{1025, 1024, 11, 10},
		{2048, 1024, 11, 10},
		{1024, 2049, 11, 12},
		{2048, 4096, 11, 12},
		{2048, 65536, 11, 16},
		{4096, 1024, 12, 11},
		{65536, 2048, 16, 11},
		{4096, 4096, 12, 12},
		{4097, 4096, 13, 12},
		{65536, 65536, 16, 16},
		{1 << 20, 1 << 20, 20, 20},
		{1<<20 - 1, 3000, 20, 12},
		{1, 2049, 11, 12},
	} {
		got, err := ServerLayout(tc.read, tc.write)
		if err != nil {
			t.Errorf("ServerLayout(%d, %d): %v", tc.read, tc.write, err)
			continue
		}
		if got.Left != tc.left || got.Right != tc.right {
			t.Errorf("ServerLayout(%d, %d) = %d/%d, want %d/%d", tc.read, tc.write, got.Left, got.Right, tc.left, tc.right)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ServerLayout(%d, %d) = %v, which does not validate: %v", tc.read, tc.write, got, err)
		}
	}
	for _, bad := range [][2]int{{-1, 0}, {0, -1}, {1<<20 + 1, 0}, {0, 1<<20 + 1}} {
		if _, err := ServerLayout(bad[0], bad[1]); err == nil {
			t.Errorf("ServerLayout(%d, %d) succeeded, want an error", bad[0], bad[1])
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for _, l := range []Layout{
		{9, 12}, {12, 9}, {21, 12}, {12, 21}, {0, 0}, {0xffff, 12},
		{10, 10}, {11, 11}, // equal in-page orders
		{10, 20}, // 256 grants do not fit before the ring at 1024
	} {
		err := l.Validate()
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("Validate(%d/%d) = %v, want an ErrProtocol", l.Left, l.Right, err)
		}
		page := make([]byte, PageSize)
		binary.NativeEndian.PutUint16(page[16:], l.Left)
		binary.NativeEndian.PutUint16(page[18:], l.Right)
		if _, _, err := ReadLayout(page); !errors.Is(err, ErrProtocol) {
			t.Errorf("ReadLayout(%d/%d) = %v, want an ErrProtocol", l.Left, l.Right, err)
		}
	}
	for _, l := range []Layout{{10, 19}, {11, 20}, {20, 20}, {10, 11}, {11, 10}, {12, 10}} {
		if err := l.Validate(); err != nil {
			t.Errorf("Validate(%d/%d) = %v, want nil", l.Left, l.Right, err)
		}
	}
	if _, _, err := ReadLayout(make([]byte, 100)); err == nil {
		t.Error("ReadLayout of a short page succeeded")
	}
}

// stream pushes total bytes from w to r in random chunk sizes and checks
// they arrive intact and in order.
func stream(t *testing.T, w, r *Endpoint, total int, rng *rand.Rand) {
	t.Helper()
	src := make([]byte, total)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	dst := make([]byte, 0, total)
	buf := make([]byte, 3*w.WriteSize())
	sent := 0
	for len(dst) < total {
		if sent < total {
			chunk := min(1+rng.IntN(2*w.WriteSize()), total-sent)
			n, _, err := w.Write(src[sent : sent+chunk])
			if err != nil {
				t.Fatal(err)
			}
			sent += n
		}
		n, _, err := r.Read(buf[:1+rng.IntN(len(buf)-1)])
		if err != nil {
			t.Fatal(err)
		}
		dst = append(dst, buf[:n]...)
	}
	if !bytes.Equal(src, dst) {
		t.Fatalf("data corrupted in transit")
	}
}

// TestWrapEveryOrder streams several times each ring's size through every
// order, in both directions, starting just below the u32 index wrap so the
// free-running indices overflow mid-stream.
func TestWrapEveryOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for order := uint16(MinOrder); order <= MaxOrder; order++ {
		l := Layout{Left: order, Right: 12}
		if order == 10 {
			l.Right = 11
		} else if order == 11 {
			l.Right = 10
		}
		srv, cli, _ := pair(t, l)
		// Move all indices to just below 2^32.
		start := uint32(0) - uint32(3<<order)/2
		for _, e := range []*Endpoint{srv, cli} {
			e.rdPos, e.wrPos = start, start
		}
		for _, p := range []*uint32{srv.rd.cons, srv.rd.prod, srv.wr.cons, srv.wr.prod} {
			*p = start
		}
		stream(t, cli, srv, 5<<order, rng) // left: client → server
		stream(t, srv, cli, 5<<l.Right, rng)
		if srv.rdPos >= start {
			t.Fatalf("order %d: index did not wrap (rdPos %#x)", order, srv.rdPos)
		}
	}
}

func TestCorruptIndices(t *testing.T) {
	srv, cli, page := pair(t, Layout{Left: 12, Right: 12})
	// The client claims to have produced more than the ring holds.
	binary.NativeEndian.PutUint32(page[4:], 4097)
	if _, err := srv.Readable(); !errors.Is(err, ErrProtocol) {
		t.Errorf("Readable with prod-cons = 4097: %v, want ErrProtocol", err)
	}
	if _, _, err := srv.Read(make([]byte, 10)); !errors.Is(err, ErrProtocol) {
		t.Errorf("Read with prod-cons = 4097: %v, want ErrProtocol", err)
	}
	// Producer behind the consumer (a huge u32 distance).
	binary.NativeEndian.PutUint32(page[4:], 0xffffffff)
	if _, err := srv.Readable(); !errors.Is(err, ErrProtocol) {
		t.Errorf("Readable with prod behind cons: %v, want ErrProtocol", err)
	}
	// The client's consumer index of the right ring moves past our producer.
	binary.NativeEndian.PutUint32(page[8:], 10)
	if _, err := srv.Writable(); !errors.Is(err, ErrProtocol) {
		t.Errorf("Writable with cons ahead of prod: %v, want ErrProtocol", err)
	}
	if _, _, err := srv.Write([]byte("x")); !errors.Is(err, ErrProtocol) {
		t.Errorf("Write with cons ahead of prod: %v, want ErrProtocol", err)
	}
	// The server scribbling over the client's own index (right.cons) does
	// not move the client: it keeps its private copy.
	binary.NativeEndian.PutUint32(page[12:], 0)
	binary.NativeEndian.PutUint32(page[8:], 0x1234)
	if n, err := cli.Readable(); err != nil || n != 0 {
		t.Errorf("client Readable after its cons was overwritten = %d, %v; want 0, nil", n, err)
	}
	// Exactly full is fine.
	binary.NativeEndian.PutUint32(page[0:], 0)
	binary.NativeEndian.PutUint32(page[4:], 4096)
	if n, err := srv.Readable(); err != nil || n != 4096 {
		t.Errorf("Readable of a full ring = %d, %v; want 4096, nil", n, err)
	}
}

func TestNotifyBits(t *testing.T) {
	srv, cli, page := pair(t, Layout{Left: 10, Right: 11})
	// After Claim the client asked for WRITE: the server's first write must
	// notify, the second not (the bit was taken).
	if _, notify, _ := srv.Write([]byte("a")); !notify {
		t.Error("server write after client's WRITE request did not ask to notify")
	}
	if _, notify, _ := srv.Write([]byte("b")); notify {
		t.Error("second server write asked to notify without a new request")
	}
	// The server's initial request (cli_notify = WRITE) makes the client's
	// first write notify.
	if _, notify, _ := cli.Write([]byte("c")); !notify {
		t.Error("client write after server's WRITE request did not ask to notify")
	}
	// A reader is asked to notify only when the writer requested READ.
	buf := make([]byte, 4)
	if _, notify, _ := cli.Read(buf); notify {
		t.Error("client read notified without a READ request")
	}
	srv.RequestNotify(NotifyRead)
	if page[22]&NotifyRead == 0 {
		t.Error("server's READ request not in cli_notify (byte 22)")
	}
	srv.Write([]byte("d"))
	if _, notify, _ := cli.Read(buf); !notify {
		t.Error("client read after server's READ request did not ask to notify")
	}
	if page[22]&NotifyRead != 0 {
		t.Error("client did not clear the READ bit it honoured")
	}
	cli.RequestNotify(NotifyRead)
	if page[23]&NotifyRead == 0 {
		t.Error("client's READ request not in srv_notify (byte 23)")
	}
	// Requests do not disturb the live bytes.
	if page[20] != 1 || page[21] != 1 {
		t.Errorf("live bytes changed to %d/%d by notify traffic", page[20], page[21])
	}
}

func TestClaim(t *testing.T) {
	_, cli, page := pair(t, Layout{Left: 10, Right: 11})
	if err := cli.Claim(); !errors.Is(err, ErrRingTaken) {
		t.Errorf("second Claim = %v, want ErrRingTaken", err)
	}
	page[20] = LiveWaiting
	page[21] = LiveClosed
	if err := cli.Claim(); !errors.Is(err, ErrRingTaken) {
		t.Errorf("Claim with srv_live 0 = %v, want ErrRingTaken", err)
	}
}

func BenchmarkRingCopy(b *testing.B) {
	srv, cli, _ := pair(b, Layout{Left: 16, Right: 16})
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		cli.Write(buf)
		srv.Read(buf)
	}
}
