package xssim

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

func TestNewStore(t *testing.T) {
	s := NewStore(DefaultLimits())
	if n := s.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	var got []string
	s.Walk(func(p string, v []byte, perms []xenstore.Perm) {
		got = append(got, fmt.Sprintf("%s=%q %s", p, v, xenstore.FormatPerms(perms)))
	})
	want := []string{`/="" n0` + "\x00", `/local="" n0` + "\x00", `/local/domain="" n0` + "\x00"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Walk = %q, want %q", got, want)
	}
	if DefaultLimits() != (Limits{Nodes: 1000, Watches: 128, Transactions: 10, NodeSize: 2048, PermEntries: 5}) {
		t.Fatalf("DefaultLimits = %+v", DefaultLimits())
	}
}

func TestWalkAndLen(t *testing.T) {
	s := newStore(t)
	d0, _ := session(s, 0)
	for _, p := range []string{"/b/z", "/b/a", "/a", "/b/a/c"} {
		mustOK(t, "write", d0.Write(0, p, []byte(p)))
	}
	got := walkPaths(s)
	want := []string{"/", "/a", "/b", "/b/a", "/b/a/c", "/b/z", "/local", "/local/domain", "/local/domain/0", "/local/domain/0/domid"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Walk = %q, want %q", got, want)
	}
	if s.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(want))
	}
	s.Walk(func(p string, v []byte, perms []xenstore.Perm) {
		if len(v) > 0 {
			v[0] = 'X'
		}
		perms[0].Domain = 7
	})
	if v, _ := d0.Read(0, "/a"); string(v) != "/a" {
		t.Fatalf("Walk exposed internal value: %q", v)
	}
	if p, _ := d0.GetPerms(0, "/a"); p[0].Domain != 0 {
		t.Fatal("Walk exposed internal perms")
	}
	// Walk may call back into the store.
	s.Walk(func(p string, _ []byte, _ []xenstore.Perm) {
		if _, err := d0.Read(0, p); err != nil {
			t.Errorf("read %s during Walk: %v", p, err)
		}
	})
}

func TestPathHelpers(t *testing.T) {
	for _, tc := range []struct {
		p, anc string
		want   bool
	}{
		{"/a", "/", true},
		{"/", "/", true},
		{"/a", "/a", true},
		{"/a/b", "/a", true},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/b/a", "/a", false},
	} {
		if got := isUnder(tc.p, tc.anc); got != tc.want {
			t.Errorf("isUnder(%q, %q) = %v", tc.p, tc.anc, got)
		}
	}
	for _, tc := range []struct{ p, parent, base string }{
		{"/a", "/", "a"},
		{"/a/b", "/a", "b"},
		{"/local/domain/1", "/local/domain", "1"},
	} {
		if got := parentPath(tc.p); got != tc.parent {
			t.Errorf("parentPath(%q) = %q", tc.p, got)
		}
		if got := baseName(tc.p); got != tc.base {
			t.Errorf("baseName(%q) = %q", tc.p, got)
		}
		if got := joinPath(tc.parent, tc.base); got != tc.p {
			t.Errorf("joinPath(%q, %q) = %q", tc.parent, tc.base, got)
		}
	}
	for _, tc := range []struct {
		dom     uint16
		p, want string
	}{
		{1, "/local/domain/1/data", "data"},
		{1, "/local/domain/1", "/local/domain/1"},
		{1, "/local/domain/10/data", "/local/domain/10/data"},
		{1, "/local/domain/2/data", "/local/domain/2/data"},
	} {
		if got := relativeTo(tc.dom, tc.p); got != tc.want {
			t.Errorf("relativeTo(%d, %q) = %q", tc.dom, tc.p, got)
		}
	}
}
