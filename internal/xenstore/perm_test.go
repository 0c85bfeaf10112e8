package xenstore

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
)

func TestParsePerm(t *testing.T) {
	good := []struct {
		in   string
		want Perm
	}{
		{"n0", Perm{0, AccessNone}},
		{"r5", Perm{5, AccessRead}},
		{"w10", Perm{10, AccessWrite}},
		{"b65535", Perm{65535, AccessBoth}},
		{"r32767", Perm{32767, AccessRead}},
		{"n65534", Perm{65534, AccessNone}},
	}
	for _, tc := range good {
		got, err := ParsePerm(tc.in)
		if err != nil {
			t.Errorf("ParsePerm(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParsePerm(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParsePerm(%q).String() = %q", tc.in, s)
		}
	}
	bad := []string{
		"", "n", "r", "x0", "N0", "R5", "0", "5",
		"r-1", "r+1", "+r1", "r 1", " r1", "r1 ", "r1\x00", "r\x001",
		"r65536", "r99999", "r100000", "r4294967296", "r18446744073709551617",
		"r00", "r01", "r0x10", "r1e3", "r1.0", "rr1", "r1r", "b", "i0",
		"r\u0661", // Arabic-Indic digit one
	}
	for _, in := range bad {
		if p, err := ParsePerm(in); err == nil {
			t.Errorf("ParsePerm(%q) = %+v, want error", in, p)
		} else if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ParsePerm(%q) error %v does not wrap EINVAL", in, err)
		}
	}
}

func TestPermString(t *testing.T) {
	for _, tc := range []struct {
		p    Perm
		want string
	}{
		{Perm{0, AccessNone}, "n0"},
		{Perm{5, AccessRead}, "r5"},
		{Perm{7, AccessWrite}, "w7"},
		{Perm{65535, AccessBoth}, "b65535"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestParsePerms(t *testing.T) {
	good := []struct {
		in   string
		want []Perm
	}{
		{"n0\x00", []Perm{{0, AccessNone}}},
		{"n0", []Perm{{0, AccessNone}}},
		{"n0\x00r5\x00", []Perm{{0, AccessNone}, {5, AccessRead}}},
		{"n0\x00r5", []Perm{{0, AccessNone}, {5, AccessRead}}},
		{"b1\x00w2\x00r3\x00n4\x00", []Perm{{1, AccessBoth}, {2, AccessWrite}, {3, AccessRead}, {4, AccessNone}}},
	}
	for _, tc := range good {
		got, err := ParsePerms([]byte(tc.in))
		if err != nil {
			t.Errorf("ParsePerms(%q): %v", tc.in, err)
			continue
		}
		if !equalPerms(got, tc.want) {
			t.Errorf("ParsePerms(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	bad := []string{
		"", "\x00", "\x00\x00", "n0\x00\x00", "\x00n0\x00", "n0\x00\x00r1\x00",
		"n0\x00x1\x00", "n0\x00r70000\x00", "n0 r1", "n0\x00r1\x00\x00",
	}
	for _, in := range bad {
		if p, err := ParsePerms([]byte(in)); err == nil {
			t.Errorf("ParsePerms(%q) = %v, want error", in, p)
		} else if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ParsePerms(%q) error %v does not wrap EINVAL", in, err)
		}
	}
}

func TestFormatPerms(t *testing.T) {
	perms := []Perm{{0, AccessNone}, {5, AccessRead}}
	got := FormatPerms(perms)
	if want := []byte("n0\x00r5\x00"); !bytes.Equal(got, want) {
		t.Fatalf("FormatPerms = %q, want %q", got, want)
	}
	back, err := ParsePerms(got)
	if err != nil || !equalPerms(back, perms) {
		t.Fatalf("ParsePerms(FormatPerms) = %v, %v", back, err)
	}
	if got := FormatPerms(nil); len(got) != 0 {
		t.Fatalf("FormatPerms(nil) = %q", got)
	}
}

func equalPerms(a, b []Perm) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
