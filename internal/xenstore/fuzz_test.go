package xenstore

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParsePerm checks that ParsePerm accepts exactly the canonical forms.
func FuzzParsePerm(f *testing.F) {
	for _, s := range []string{
		"n0", "r5", "w65535", "b1", "", "r", "r65536", "r-1", "r+1", "r 1",
		"r01", "r0x1", "x1", "r1\x00", "b99999", "n00", "\xff1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePerm(s)
		if err != nil {
			return
		}
		if got := p.String(); got != s {
			t.Fatalf("ParsePerm(%q) = %+v, String %q", s, p, got)
		}
		if !p.Access.Valid() {
			t.Fatalf("ParsePerm(%q) accepted access %q", s, p.Access)
		}
	})
}

// FuzzPermList checks that accepted lists survive a round trip through
// FormatPerms.
func FuzzPermList(f *testing.F) {
	for _, s := range []string{
		"n0\x00", "n0\x00r5\x00", "n0\x00r5", "", "\x00", "n0\x00\x00",
		"b1\x00w2\x00r3\x00n4\x00", "n0\x00x1\x00", "r70000\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		perms, err := ParsePerms(data)
		if err != nil {
			return
		}
		if len(perms) == 0 {
			t.Fatalf("ParsePerms(%q) accepted an empty list", data)
		}
		out := FormatPerms(perms)
		want := data
		if len(want) == 0 || want[len(want)-1] != 0 {
			want = append(append([]byte{}, data...), 0)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("ParsePerms(%q) then FormatPerms = %q", data, out)
		}
	})
}

// FuzzResolvePath checks the invariants of accepted paths.
func FuzzResolvePath(f *testing.F) {
	for _, s := range []string{
		"/", "/local/domain/0", "data/vchan/1/5", "", "//", "/a/", "a/",
		"/a//b", "@introduceDomain", "@releaseDomain", "/a b", "/ä", "a@b",
		"/" + strings.Repeat("x", MaxAbsPathLen), strings.Repeat("y", MaxRelPathLen),
	} {
		f.Add(uint16(1), s)
	}
	f.Fuzz(func(t *testing.T, dom uint16, p string) {
		abs, err := ResolvePath(dom, p)
		if err != nil {
			if ValidPath(p) {
				t.Fatalf("ValidPath(%q) but ResolvePath fails: %v", p, err)
			}
			return
		}
		if !ValidPath(p) {
			t.Fatalf("ResolvePath(%q) succeeds but not ValidPath", p)
		}
		if !strings.HasPrefix(abs, "/") || len(abs) > MaxAbsPathLen {
			t.Fatalf("ResolvePath(%q) = %q", p, abs)
		}
		if strings.Contains(abs, "//") || (abs != "/" && strings.HasSuffix(abs, "/")) {
			t.Fatalf("ResolvePath(%q) = %q has bad slashes", p, abs)
		}
		if !strings.HasPrefix(p, "/") {
			if len(p) > MaxRelPathLen || abs != DomainPath(dom)+"/"+p {
				t.Fatalf("ResolvePath(%d, %q) = %q", dom, p, abs)
			}
		}
		for i := 0; i < len(abs); i++ {
			c := abs[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-/_@", c) >= 0) {
				t.Fatalf("ResolvePath(%q) = %q has byte %q", p, abs, c)
			}
		}
		// Resolution is idempotent, and the watch form agrees.
		if again, err := ResolvePath(dom+1, abs); err != nil || again != abs {
			t.Fatalf("ResolvePath(%q) = %q, %v", abs, again, err)
		}
		if w, _, err := ResolveWatchPath(dom, p); err != nil || w != abs {
			t.Fatalf("ResolveWatchPath(%q) = %q, %v", p, w, err)
		}
	})
}
