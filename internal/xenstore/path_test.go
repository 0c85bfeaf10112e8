package xenstore

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestResolvePath(t *testing.T) {
	long := func(n int, prefix string) string {
		return prefix + strings.Repeat("a", n-len(prefix))
	}
	tests := []struct {
		dom  uint16
		in   string
		want string // "" means EINVAL
	}{
		{0, "/", "/"},
		{0, "/local", "/local"},
		{0, "/local/domain/0/data/vchan/1/5/ring-ref", "/local/domain/0/data/vchan/1/5/ring-ref"},
		{0, "/a-b_c@d/E9", "/a-b_c@d/E9"},
		{1, "domid", "/local/domain/1/domid"},
		{7, "data/vchan/0/42", "/local/domain/7/data/vchan/0/42"},
		{65535, "x", "/local/domain/65535/x"},
		{1, "a@b", "/local/domain/1/a@b"},
		{0, long(MaxAbsPathLen, "/"), long(MaxAbsPathLen, "/")},
		{3, long(MaxRelPathLen, ""), "/local/domain/3/" + long(MaxRelPathLen, "")},

		{0, "", ""},
		{0, "//", ""},
		{0, "/a//b", ""},
		{0, "/a/", ""},
		{0, "a/", ""},
		{0, "/a b", ""},
		{0, "/a.b", ""},
		{0, "/a\x00b", ""},
		{0, "/a\nb", ""},
		{0, "/ä", ""},
		{0, "/..", ""},
		{0, "./a", ""},
		{0, "a//b", ""},
		{0, "@introduceDomain", ""}, // only for watches
		{0, "@releaseDomain", ""},
		{0, "@foo", ""},
		{0, long(MaxAbsPathLen+1, "/"), ""},
		{0, long(MaxRelPathLen+1, ""), ""},
	}
	for _, tc := range tests {
		got, err := ResolvePath(tc.dom, tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ResolvePath(%d, %.40q) = %q, want EINVAL", tc.dom, tc.in, got)
			} else if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("ResolvePath(%d, %.40q): %v, want EINVAL", tc.dom, tc.in, err)
			}
			if ValidPath(tc.in) {
				t.Errorf("ValidPath(%.40q) = true", tc.in)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResolvePath(%d, %.40q) = %.60q, %v; want %.60q", tc.dom, tc.in, got, err, tc.want)
		}
		if !ValidPath(tc.in) {
			t.Errorf("ValidPath(%.40q) = false", tc.in)
		}
	}
}

func TestResolveWatchPath(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     string
		relative bool
		ok       bool
	}{
		{"@introduceDomain", "@introduceDomain", false, true},
		{"@releaseDomain", "@releaseDomain", false, true},
		{"@releaseDomainX", "", false, false},
		{"@", "", false, false},
		{"/local", "/local", false, true},
		{"data", "/local/domain/4/data", true, true},
		{"/a/", "", false, false},
	} {
		got, rel, err := ResolveWatchPath(4, tc.in)
		if ok := err == nil; ok != tc.ok || got != tc.want || rel != tc.relative {
			t.Errorf("ResolveWatchPath(4, %q) = %q, %v, %v", tc.in, got, rel, err)
		}
	}
}

func TestDomainPath(t *testing.T) {
	if got := DomainPath(12); got != "/local/domain/12" {
		t.Errorf("DomainPath(12) = %q", got)
	}
}
