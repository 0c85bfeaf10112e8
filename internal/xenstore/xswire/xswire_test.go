package xswire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"syscall"
	"testing"
)

func rawHeader(typ, req, tx, n uint32) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint32(b[0:], typ)
	binary.NativeEndian.PutUint32(b[4:], req)
	binary.NativeEndian.PutUint32(b[8:], tx)
	binary.NativeEndian.PutUint32(b[12:], n)
	return b
}

func TestTypeNumbers(t *testing.T) {
	// The numbering is the protocol; pin every value (xs_wire.h).
	want := []struct {
		t Type
		n uint32
	}{
		{Control, 0}, {Directory, 1}, {Read, 2}, {GetPerms, 3}, {Watch, 4}, {Unwatch, 5},
		{TransactionStart, 6}, {TransactionEnd, 7}, {Introduce, 8}, {Release, 9},
		{GetDomainPath, 10}, {Write, 11}, {Mkdir, 12}, {Rm, 13}, {SetPerms, 14},
		{WatchEvent, 15}, {Error, 16}, {IsDomainIntroduced, 17}, {Resume, 18},
		{SetTarget, 19}, {Restrict, 20}, {ResetWatches, 21}, {DirectoryPart, 22},
		{GetFeature, 23}, {SetFeature, 24}, {GetQuota, 25}, {SetQuota, 26},
		{TypeCount, 27}, {Invalid, 0xffff}, {Debug, 0},
	}
	for _, w := range want {
		if uint32(w.t) != w.n {
			t.Errorf("%s = %d, want %d", w.t, uint32(w.t), w.n)
		}
	}
	if Read.String() != "READ" || Invalid.String() != "INVALID" || Type(99).String() != "TYPE(99)" {
		t.Errorf("String: %q %q %q", Read, Invalid, Type(99))
	}
}

func TestHeaderLayout(t *testing.T) {
	b := AppendHeader(nil, Header{Type: Write, ReqID: 0x01020304, TxID: 7, Len: 9})
	if !bytes.Equal(b, rawHeader(11, 0x01020304, 7, 9)) {
		t.Fatalf("header bytes %x", b)
	}
	if h := DecodeHeader(b); h != (Header{Write, 0x01020304, 7, 9}) {
		t.Fatalf("decoded %+v", h)
	}
}

func TestRoundTrip(t *testing.T) {
	msgs := []Message{
		{Type: Read, ReqID: 1, Payload: []byte("/a\x00")},
		{Type: Write, ReqID: 2, TxID: 5, Payload: []byte("/a\x00value")},
		{Type: TransactionStart, ReqID: 0xffffffff, Payload: []byte{0}},
		{Type: Rm, ReqID: 3},
		{Type: Write, ReqID: 4, Payload: bytes.Repeat([]byte{'x'}, PayloadMax)},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range msgs {
		got, err := ReadMessage(&buf, PayloadMax)
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != want.Type || got.ReqID != want.ReqID || got.TxID != want.TxID || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if _, err := ReadMessage(&buf, PayloadMax); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

// countingReader records how much was read, to prove an oversized len is
// rejected before any payload is consumed.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestHostileHeaders(t *testing.T) {
	// len 0xffffffff: rejected from the header alone.
	cr := &countingReader{r: bytes.NewReader(append(rawHeader(2, 1, 0, 0xffffffff), make([]byte, 64)...))}
	if _, err := ReadMessage(cr, PayloadMax); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("len 0xffffffff: %v", err)
	}
	if cr.n != HeaderSize {
		t.Fatalf("read %d bytes, want only the header", cr.n)
	}
	// One over the limit, for both limits.
	for _, limit := range []int{PayloadMax, DevicePayloadMax} {
		r := bytes.NewReader(append(rawHeader(2, 1, 0, uint32(limit+1)), make([]byte, limit+1)...))
		if _, err := ReadMessage(r, limit); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("limit %d: %v", limit, err)
		}
		r = bytes.NewReader(append(rawHeader(2, 1, 0, uint32(limit)), make([]byte, limit)...))
		if _, err := ReadMessage(r, limit); err != nil {
			t.Fatalf("at limit %d: %v", limit, err)
		}
	}
	// A negative limit is a caller bug; it accepts nothing.
	if _, err := ReadMessage(bytes.NewReader(rawHeader(2, 1, 0, 0)), -1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("negative limit: %v", err)
	}
	// Truncated header and truncated payload.
	if _, err := ReadMessage(bytes.NewReader(rawHeader(2, 1, 0, 0)[:9]), PayloadMax); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated header: %v", err)
	}
	if _, err := ReadMessage(bytes.NewReader(append(rawHeader(2, 1, 0, 10), "abc"...)), PayloadMax); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated payload: %v", err)
	}
	if _, err := ReadMessage(bytes.NewReader(rawHeader(2, 1, 0, 10)), PayloadMax); err != io.ErrUnexpectedEOF {
		t.Fatalf("missing payload: %v", err)
	}
}

func TestSplitStrings(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  error
	}{
		{"", nil, nil},
		{"\x00", []string{""}, nil},
		{"a\x00b\x00", []string{"a", "b"}, nil},
		{"a\x00\x00", []string{"a", ""}, nil},
		{"a", nil, ErrNotTerminated},
		{"a\x00b", nil, ErrNotTerminated},
	}
	for _, c := range cases {
		got, err := SplitStrings([]byte(c.in))
		if !errors.Is(err, c.err) || (err == nil && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("SplitStrings(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
	if _, err := ExactStrings([]byte("a\x00b\x00"), 1); !errors.Is(err, ErrStringCount) {
		t.Errorf("ExactStrings count: %v", err)
	}
	if ss, err := ExactStrings([]byte("a\x00b\x00"), 2); err != nil || len(ss) != 2 {
		t.Errorf("ExactStrings: %q %v", ss, err)
	}
	if _, err := ExactStrings([]byte("a"), 1); !errors.Is(err, ErrNotTerminated) {
		t.Errorf("ExactStrings unterminated: %v", err)
	}
}

func TestJoinStrings(t *testing.T) {
	b, err := JoinStrings("a", "", "bc")
	if err != nil || string(b) != "a\x00\x00bc\x00" {
		t.Fatalf("JoinStrings = %q, %v", b, err)
	}
	if _, err := JoinStrings("a\x00b"); !errors.Is(err, ErrEmbeddedNUL) {
		t.Fatalf("embedded NUL: %v", err)
	}
	if b, err := JoinStrings(); err != nil || len(b) != 0 {
		t.Fatalf("empty join = %q, %v", b, err)
	}
}

func TestSplitPathValue(t *testing.T) {
	p, v, err := SplitPathValue([]byte("/a/b\x00val\x00ue"))
	if err != nil || p != "/a/b" || string(v) != "val\x00ue" {
		t.Fatalf("got %q %q %v", p, v, err)
	}
	p, v, err = SplitPathValue([]byte("/a\x00"))
	if err != nil || p != "/a" || len(v) != 0 {
		t.Fatalf("empty value: %q %q %v", p, v, err)
	}
	if _, _, err := SplitPathValue([]byte("/a")); !errors.Is(err, ErrNotTerminated) {
		t.Fatalf("unterminated: %v", err)
	}
}

func TestParseWatchEvent(t *testing.T) {
	p, tok, err := ParseWatchEvent([]byte("/a\x00tok\x00"))
	if err != nil || p != "/a" || tok != "tok" {
		t.Fatalf("got %q %q %v", p, tok, err)
	}
	// Extra payload from the kernel device is ignored.
	p, tok, err = ParseWatchEvent([]byte("/a\x00tok\x00extra"))
	if err != nil || p != "/a" || tok != "tok" {
		t.Fatalf("extra: %q %q %v", p, tok, err)
	}
	for _, bad := range []string{"", "/a", "/a\x00", "/a\x00tok"} {
		if _, _, err := ParseWatchEvent([]byte(bad)); !errors.Is(err, ErrNotTerminated) {
			t.Errorf("ParseWatchEvent(%q): %v", bad, err)
		}
	}
}

func TestErrnoNames(t *testing.T) {
	names := []string{"EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
		"ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM"}
	for _, n := range names {
		e := ErrnoFromName(n)
		back, ok := ErrnoName(e)
		if !ok || back != n {
			t.Errorf("%s -> %d -> %q %v", n, e, back, ok)
		}
		if got := ParseErrorPayload(ErrorPayload(e)); got != e {
			t.Errorf("payload round trip of %s: %v", n, got)
		}
	}
	if ErrnoFromName("ENOENT") != syscall.ENOENT || ErrnoFromName("EAGAIN") != syscall.EAGAIN {
		t.Fatal("wrong mapping")
	}
	for _, bad := range []string{"", "enoent", "EFOO", "ENOENT ", "EDQUOT"} {
		if ErrnoFromName(bad) != syscall.EINVAL {
			t.Errorf("unknown name %q not EINVAL", bad)
		}
	}
	// oxenstored's quota error, outside the table: EDQUOT, so that a quota
	// is not taken for a bad request (what libxenstore's EINVAL makes it).
	if got := ParseErrorPayload([]byte(QuotaName + "\x00")); got != syscall.EDQUOT {
		t.Errorf("%s = %v, want EDQUOT", QuotaName, got)
	}
	if string(ErrorPayload(syscall.EDQUOT)) != "EINVAL\x00" {
		t.Errorf("untranslatable errno payload %q", ErrorPayload(syscall.EDQUOT))
	}
	if ParseErrorPayload([]byte("ENOENT")) != syscall.ENOENT {
		t.Error("unterminated error name should still parse")
	}
	if ParseErrorPayload([]byte("EACCES\x00junk")) != syscall.EACCES {
		t.Error("name stops at NUL")
	}
	if ParseErrorPayload(nil) != syscall.EINVAL {
		t.Error("empty error payload should be EINVAL")
	}
}
