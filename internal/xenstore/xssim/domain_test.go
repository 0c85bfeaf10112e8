package xssim

import (
	"errors"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

func TestIntroduceDomain(t *testing.T) {
	s := NewStore(DefaultLimits())
	mustOK(t, "introduce 0", s.IntroduceDomain(0))
	mustOK(t, "introduce 1", s.IntroduceDomain(1))
	wantErr(t, "introduce 1 again", s.IntroduceDomain(1), syscall.EEXIST)
	if n := s.Len(); n != 7 {
		t.Fatalf("Len = %d, want 7", n)
	}
	d0, _ := session(s, 0)
	for _, tc := range []struct {
		path, value, perms string
	}{
		{"/local/domain/0", "", "n0\x00"},
		{"/local/domain/0/domid", "0", "n0\x00"},
		{"/local/domain/1", "", "n1\x00"},
		{"/local/domain/1/domid", "1", "n0\x00r1\x00"},
	} {
		v, err := d0.Read(0, tc.path)
		mustOK(t, "read "+tc.path, err)
		p, err := d0.GetPerms(0, tc.path)
		mustOK(t, "get_perms "+tc.path, err)
		if string(v) != tc.value || string(xenstore.FormatPerms(p)) != tc.perms {
			t.Errorf("%s = %q %q, want %q %q", tc.path, v, xenstore.FormatPerms(p), tc.value, tc.perms)
		}
	}
	d1, _ := session(s, 1)
	v, err := d1.Read(0, "domid")
	if err != nil || string(v) != "1" {
		t.Fatalf("dom1 read domid = %q, %v", v, err)
	}
	wantErr(t, "dom1 write domid", d1.Write(0, "domid", []byte("0")), syscall.EACCES)
	d2, _ := session(s, 2)
	_, err = d2.Read(0, "/local/domain/1/domid")
	wantErr(t, "dom2 read dom1's domid", err, syscall.EACCES)
	if d1.Domain() != 1 || d1.DomainPath(5) != "/local/domain/5" {
		t.Fatalf("Domain/DomainPath wrong")
	}
}

func TestReleaseDomain(t *testing.T) {
	s := newStore(t)
	n0 := s.Len()
	mustOK(t, "introduce", s.IntroduceDomain(1))
	d0, r0 := session(s, 0)
	mustOK(t, "shared dir", d0.Write(0, "/shared", nil))
	mustOK(t, "shared perms", d0.SetPerms(0, "/shared", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}}))
	mustOK(t, "watch", d0.Watch("/local/domain", "dom"))
	mustOK(t, "watch", d0.Watch(xenstore.ReleaseDomainPath, "rel"))
	mustOK(t, "watch below", d0.Watch("/local/domain/1/data/x", "x"))
	r0.take()

	c1 := s.Connect(1)
	mustOK(t, "write", c1.Write("data/x", []byte("v")))
	mustOK(t, "write shared", c1.Write("/shared/mine", nil))
	w, err := c1.Watch("data")
	mustOK(t, "watch", err)
	next(t, w)
	tx, err := c1.Begin()
	mustOK(t, "begin", err)
	sess, _ := session(s, 1)
	r0.take()

	mustOK(t, "release", s.ReleaseDomain(1))
	r0.expect(t, "release", "/local/domain/1 dom", "/local/domain/1/data/x x", "@releaseDomain rel")
	if _, err := d0.Read(0, "/local/domain/1"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("home still there: %v", err)
	}
	// Nodes dom1 owned elsewhere now belong to dom0.
	perms, err := d0.GetPerms(0, "/shared/mine")
	mustOK(t, "get_perms", err)
	if string(xenstore.FormatPerms(perms)) != "n0\x00b1\x00" {
		t.Fatalf("orphan perms %q", xenstore.FormatPerms(perms))
	}
	// The domain's sessions are closed.
	_, err = c1.Read("/shared/mine")
	wantErr(t, "read after release", err, syscall.ENOTCONN)
	wantErr(t, "session after release", sess.Write(0, "data/y", nil), syscall.ENOTCONN)
	wantErr(t, "commit after release", tx.Commit(), syscall.ENOTCONN)
	wantClosed(t, w)
	mustOK(t, "close watch after release", w.Close())
	mustOK(t, "close client after release", c1.Close())

	wantErr(t, "release again", s.ReleaseDomain(1), syscall.ENOENT)
	wantErr(t, "release dom0", s.ReleaseDomain(0), syscall.EINVAL)
	mustOK(t, "rm shared", d0.Rm(0, "/shared"))
	if s.Len() != n0 {
		t.Fatalf("Len = %d, want %d", s.Len(), n0)
	}
	// Reintroduced, the domain starts afresh.
	mustOK(t, "reintroduce", s.IntroduceDomain(1))
	s.mu.Lock()
	owned, watches := s.owned[1], s.watchCount[1]
	s.mu.Unlock()
	if owned != 1 || watches != 0 {
		t.Fatalf("after reintroduce: owned %d watches %d", owned, watches)
	}
}
