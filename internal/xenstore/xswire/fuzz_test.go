package xswire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzReadMessage(f *testing.F) {
	f.Add(append(rawHeader(2, 1, 0, 3), "/a\x00"...), PayloadMax)
	f.Add(append(rawHeader(11, 9, 4, 5), "/a\x00xy"...), DevicePayloadMax)
	f.Add(rawHeader(2, 1, 0, 0xffffffff), PayloadMax)
	f.Add(append(rawHeader(15, 0, 0, 100), "short"...), PayloadMax)
	f.Add([]byte{1, 2, 3}, PayloadMax)
	f.Add(append(append(rawHeader(16, 3, 0, 7), "ENOENT\x00"...), rawHeader(1, 2, 0, 0)...), 0)
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if limit > 1<<16 {
			limit = 1 << 16
		}
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			m, err := ReadMessage(r, limit)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(m.Payload) > limit {
				t.Fatalf("payload %d over limit %d", len(m.Payload), limit)
			}
			consumed := before - r.Len()
			b, err := AppendMessage(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			start := len(data) - before
			if !bytes.Equal(b, data[start:start+consumed]) {
				t.Fatalf("re-encoding differs: %x vs %x", b, data[start:start+consumed])
			}
		}
	})
}

func FuzzSplitStrings(f *testing.F) {
	for _, s := range []string{"", "\x00", "a\x00b\x00", "a", "a\x00b", "\x00\x00\x00", "/local/domain/0\x00r1\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		ss, err := SplitStrings(p)
		if err != nil {
			if len(p) == 0 || p[len(p)-1] == 0 {
				t.Fatalf("rejected a terminated payload %q: %v", p, err)
			}
			return
		}
		back, err := JoinStrings(ss...)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, p) {
			t.Fatalf("join(split(%q)) = %q", p, back)
		}
		if _, err := ExactStrings(p, len(ss)); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzSplitPathValue(f *testing.F) {
	for _, s := range []string{"", "/a\x00", "/a\x00value", "/a", "\x00\x00x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		path, val, err := SplitPathValue(p)
		if err != nil {
			if bytes.IndexByte(p, 0) >= 0 {
				t.Fatalf("rejected %q: %v", p, err)
			}
			return
		}
		b, err := AppendString(nil, path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(b, val...), p) {
			t.Fatalf("reassembly of %q differs", p)
		}
	})
}

func FuzzParseWatchEvent(f *testing.F) {
	for _, s := range []string{"", "/a\x00t\x00", "/a\x00t\x00extra", "/a\x00", "/a\x00t", "@releaseDomain\x00w1\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		path, tok, err := ParseWatchEvent(p)
		if err != nil {
			return
		}
		b, err := JoinStrings(path, tok)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(p, b) {
			t.Fatalf("%q does not start with %q", p, b)
		}
	})
}

func FuzzParseErrorPayload(f *testing.F) {
	for _, s := range []string{"", "ENOENT\x00", "EAGAIN", "E2BIG\x00x", "bogus\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		e := ParseErrorPayload(p)
		if _, ok := ErrnoName(e); !ok {
			t.Fatalf("ParseErrorPayload(%q) = %v, not in the table", p, e)
		}
	})
}
