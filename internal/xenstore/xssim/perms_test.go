package xssim

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

func TestPermissions(t *testing.T) {
	s := newStore(t, 1, 2, 3, 4)
	d0, _ := session(s, 0)
	setup := []struct {
		path  string
		perms string
	}{
		{"/t/owned1", "n1"},
		{"/t/rdefault", "r0"},
		{"/t/mixed", "n0\x00r1\x00w2\x00b3"},
		{"/t/bdefault", "b0\x00n4"},
		{"/t/override", "r2\x00n1\x00r1"}, // the first entry for a domain wins
	}
	for _, st := range setup {
		mustOK(t, "write "+st.path, d0.Write(0, st.path, []byte("v")))
		perms, err := xenstore.ParsePerms([]byte(st.perms))
		mustOK(t, "parse", err)
		mustOK(t, "set_perms "+st.path, d0.SetPerms(0, st.path, perms))
	}
	const ok, acc = 0, syscall.EACCES
	tests := []struct {
		path        string
		dom         uint16
		read, write syscall.Errno
	}{
		{"/t/owned1", 0, ok, ok}, // dom0 bypasses everything
		{"/t/owned1", 1, ok, ok}, // owner
		{"/t/owned1", 2, acc, acc},
		{"/t/rdefault", 1, ok, acc},
		{"/t/rdefault", 4, ok, acc},
		{"/t/rdefault", 0, ok, ok},
		{"/t/mixed", 1, ok, acc},
		{"/t/mixed", 2, acc, ok},
		{"/t/mixed", 3, ok, ok},
		{"/t/mixed", 4, acc, acc}, // default letter n
		{"/t/bdefault", 1, ok, ok},
		{"/t/bdefault", 4, acc, acc},
		{"/t/override", 1, acc, acc},
		{"/t/override", 2, ok, ok}, // owner
		{"/t/override", 3, ok, acc},
		{"/t", 1, acc, acc}, // inherited n0 from "/"
	}
	for _, tc := range tests {
		c, _ := session(s, tc.dom)
		what := fmt.Sprintf("dom%d %s", tc.dom, tc.path)
		_, err := c.Read(0, tc.path)
		wantErr(t, what+" read", err, tc.read)
		_, err = c.Directory(0, tc.path)
		wantErr(t, what+" directory", err, tc.read)
		_, err = c.GetPerms(0, tc.path)
		wantErr(t, what+" get_perms", err, tc.read)
		wantErr(t, what+" write", c.Write(0, tc.path, []byte("w")), tc.write)
		wantErr(t, what+" mkdir", c.Mkdir(0, tc.path), tc.write)
		wantErr(t, what+" create child", c.Write(0, tc.path+"/child", nil), tc.write)
		c.Close()
	}
}

func TestInheritOnCreate(t *testing.T) {
	s := newStore(t, 1, 2)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	d2, _ := session(s, 2)
	mustOK(t, "mkdir", d0.Mkdir(0, "/t"))
	mustOK(t, "set_perms", d0.SetPerms(0, "/t", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}, {Domain: 2, Access: xenstore.AccessRead}}))

	// dom1 creates two levels: both inherit, with dom1 as owner and the
	// default letter kept.
	mustOK(t, "dom1 write", d1.Write(0, "/t/x/y", []byte("v")))
	for _, p := range []string{"/t/x", "/t/x/y"} {
		perms, err := d0.GetPerms(0, p)
		mustOK(t, "get_perms", err)
		if got := string(xenstore.FormatPerms(perms)); got != "n1\x00b1\x00r2\x00" {
			t.Errorf("%s perms %q", p, got)
		}
	}
	if v, err := d0.Read(0, "/t/x"); err != nil || len(v) != 0 {
		t.Errorf("parent created with value %q, %v", v, err)
	}
	if v, err := d2.Read(0, "/t/x/y"); err != nil || string(v) != "v" {
		t.Errorf("dom2 read = %q, %v", v, err)
	}
	wantErr(t, "dom2 write", d2.Write(0, "/t/x/y", nil), syscall.EACCES)
	wantErr(t, "dom2 create", d2.Write(0, "/t/z", nil), syscall.EACCES)

	// dom0 creating keeps the parent's owner.
	mustOK(t, "dom0 write", d0.Write(0, "/t/x/y/z", nil))
	perms, _ := d0.GetPerms(0, "/t/x/y/z")
	if got := string(xenstore.FormatPerms(perms)); got != "n1\x00b1\x00r2\x00" {
		t.Errorf("dom0-created perms %q", got)
	}
	mustOK(t, "dom0 mkdir", d0.Mkdir(0, "/t/w"))
	perms, _ = d0.GetPerms(0, "/t/w")
	if got := string(xenstore.FormatPerms(perms)); got != "n0\x00b1\x00r2\x00" {
		t.Errorf("dom0-created perms %q", got)
	}
}

func TestEACCESvsENOENT(t *testing.T) {
	s := newStore(t, 1)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	mustOK(t, "write", d0.Write(0, "/secret/x", []byte("s")))
	mustOK(t, "write", d0.Write(0, "/open/x", []byte("o")))
	mustOK(t, "set_perms", d0.SetPerms(0, "/open", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}}))
	for _, tc := range []struct {
		path  string
		errno syscall.Errno
	}{
		{"/secret/x", syscall.EACCES},          // exists, unreadable
		{"/secret/missing", syscall.EACCES},    // parent unreadable: do not leak
		{"/secret/a/b/c", syscall.EACCES},      // deepest ancestor unreadable
		{"/open/missing", syscall.ENOENT},      // parent readable
		{"/open/missing/deep", syscall.ENOENT}, // deepest ancestor readable
		{"/open", 0},
		{"missing", syscall.ENOENT},  // dom1's home is readable to dom1
		{"/nothing", syscall.EACCES}, // "/" is n0
	} {
		_, err := d1.Read(0, tc.path)
		wantErr(t, "read "+tc.path, err, tc.errno)
		_, err = d1.GetPerms(0, tc.path)
		wantErr(t, "get_perms "+tc.path, err, tc.errno)
		_, err = d1.Directory(0, tc.path)
		wantErr(t, "directory "+tc.path, err, tc.errno)
	}
	_, err := d0.Read(0, "/secret/missing")
	wantErr(t, "dom0 read missing", err, syscall.ENOENT)
	wantErr(t, "dom1 set_perms missing", d1.SetPerms(0, "/open/missing", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessNone}}), syscall.ENOENT)
	wantErr(t, "dom1 set_perms hidden", d1.SetPerms(0, "/secret/missing", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessNone}}), syscall.EACCES)
}

func TestSetPerms(t *testing.T) {
	s := newStore(t, 1, 2)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	mustOK(t, "write", d0.Write(0, "/t/x", nil))
	mustOK(t, "set_perms", d0.SetPerms(0, "/t/x", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}}))
	wantErr(t, "empty", d0.SetPerms(0, "/t/x", nil), syscall.EINVAL)
	wantErr(t, "bad letter", d0.SetPerms(0, "/t/x", []xenstore.Perm{{Domain: 0, Access: 'x'}}), syscall.EINVAL)
	wantErr(t, "bad path", d0.SetPerms(0, "/t/x/", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}}), syscall.EINVAL)
	// dom1 may write /t/x but does not own it.
	mustOK(t, "dom1 write", d1.Write(0, "/t/x", []byte("v")))
	wantErr(t, "dom1 set_perms non-owner", d1.SetPerms(0, "/t/x", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}}), syscall.EACCES)
	// dom1 owns its data but cannot give it away.
	mustOK(t, "dom1 write own", d1.Write(0, "data/y", nil))
	wantErr(t, "dom1 chown", d1.SetPerms(0, "data/y", []xenstore.Perm{{Domain: 2, Access: xenstore.AccessNone}}), syscall.EPERM)
	mustOK(t, "dom1 set_perms own", d1.SetPerms(0, "data/y", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessRead}, {Domain: 2, Access: xenstore.AccessNone}}))
	// dom0 may change the owner.
	mustOK(t, "dom0 chown", d0.SetPerms(0, "/local/domain/1/data/y", []xenstore.Perm{{Domain: 2, Access: xenstore.AccessNone}}))
	wantErr(t, "dom1 write after chown", d1.Write(0, "data/y", nil), syscall.EACCES)
	// get_perms returns a copy.
	perms, _ := d0.GetPerms(0, "/t/x")
	perms[0].Domain = 9
	perms2, _ := d0.GetPerms(0, "/t/x")
	if perms2[0].Domain != 0 {
		t.Fatal("get_perms returned internal state")
	}
	// set_perms copies its argument.
	in := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}}
	mustOK(t, "set", d0.SetPerms(0, "/t/x", in))
	in[0].Access = xenstore.AccessNone
	perms, _ = d0.GetPerms(0, "/t/x")
	if perms[0].Access != xenstore.AccessRead {
		t.Fatal("set_perms kept the caller's slice")
	}
}

func TestAccessFor(t *testing.T) {
	perms := []xenstore.Perm{{Domain: 3, Access: xenstore.AccessRead}, {Domain: 5, Access: xenstore.AccessNone}, {Domain: 6, Access: xenstore.AccessWrite}, {Domain: 7, Access: xenstore.AccessBoth}, {Domain: 5, Access: xenstore.AccessBoth}}
	for _, tc := range []struct {
		dom  uint16
		want xenstore.Access
	}{
		{3, xenstore.AccessBoth},  // owner
		{5, xenstore.AccessNone},  // first own entry wins
		{6, xenstore.AccessWrite}, // own entry
		{7, xenstore.AccessBoth},  // own entry
		{9, xenstore.AccessRead},  // default: owner's letter
		{0, xenstore.AccessRead},  // privilege is not accessFor's business
	} {
		if got := accessFor(tc.dom, perms); got != tc.want {
			t.Errorf("accessFor(%d) = %c, want %c", tc.dom, got, tc.want)
		}
	}
	if got := accessFor(1, nil); got != xenstore.AccessNone {
		t.Errorf("accessFor with no perms = %c", got)
	}
}
