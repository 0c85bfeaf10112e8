package xssim

import (
	"strings"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

func TestWatches(t *testing.T) {
	s := newStore(t, 1, 2)
	d0, r0 := session(s, 0)
	d1, r1 := session(s, 1)

	// Fires once on registration, with the path as given.
	mustOK(t, "watch", d0.Watch("/w", "t1"))
	r0.expect(t, "registration", "/w t1")
	mustOK(t, "watch relative", d1.Watch("data", "rel"))
	r1.expect(t, "relative registration", "data rel")
	wantErr(t, "duplicate", d0.Watch("/w", "t1"), syscall.EEXIST)
	mustOK(t, "same path, other token", d0.Watch("/w", "t2"))
	r0.expect(t, "second token", "/w t2")
	mustOK(t, "unwatch t2", d0.Unwatch("/w", "t2"))
	wantErr(t, "unwatch again", d0.Unwatch("/w", "t2"), syscall.ENOENT)
	wantErr(t, "unwatch unknown token", d0.Unwatch("/w", "nope"), syscall.ENOENT)
	wantErr(t, "watch bad path", d0.Watch("/w/", "x"), syscall.EINVAL)
	wantErr(t, "watch bad special", d0.Watch("@other", "x"), syscall.EINVAL)
	wantErr(t, "unwatch bad path", d0.Unwatch("//", "x"), syscall.EINVAL)

	// Changes to the node and below fire; neighbours do not.
	mustOK(t, "write", d0.Write(0, "/w/a/b", []byte("1")))
	r0.expect(t, "write child", "/w/a/b t1")
	mustOK(t, "write", d0.Write(0, "/wx", nil))
	mustOK(t, "write", d0.Write(0, "/x/w", nil))
	r0.expect(t, "neighbours")
	mustOK(t, "write", d0.Write(0, "/w", []byte("2")))
	r0.expect(t, "write node", "/w t1")
	mustOK(t, "mkdir", d0.Mkdir(0, "/w/m"))
	r0.expect(t, "mkdir", "/w/m t1")
	mustOK(t, "mkdir existing", d0.Mkdir(0, "/w/m"))
	r0.expect(t, "mkdir existing")
	mustOK(t, "set_perms", d0.SetPerms(0, "/w/a", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}}))
	r0.expect(t, "set_perms", "/w/a t1")
	mustOK(t, "rm child", d0.Rm(0, "/w/a/b"))
	r0.expect(t, "rm child", "/w/a/b t1")
	mustOK(t, "rm absent", d0.Rm(0, "/w/a/b"))
	r0.expect(t, "rm absent")

	// Removing an ancestor fires watches below it with their own path.
	mustOK(t, "watch below", d0.Watch("/w/a/deep/er", "below"))
	mustOK(t, "watch root", d0.Watch("/", "root"))
	r0.expect(t, "registrations", "/w/a/deep/er below", "/ root")
	mustOK(t, "rm ancestor", d0.Rm(0, "/w"))
	r0.expect(t, "rm ancestor", "/w t1", "/w root", "/w/a/deep/er below")
	mustOK(t, "unwatch", d0.Unwatch("/", "root"))
	mustOK(t, "unwatch", d0.Unwatch("/w/a/deep/er", "below"))

	// Relative watches report relative paths.
	mustOK(t, "dom1 write", d1.Write(0, "data/x", []byte("v")))
	r1.expect(t, "relative event", "data/x rel")
	mustOK(t, "dom0 write", d0.Write(0, "/local/domain/1/data/y", nil))
	r1.expect(t, "relative event from dom0", "data/y rel")
	mustOK(t, "dom0 rm", d0.Rm(0, "/local/domain/1"))
	r1.expect(t, "relative event on rm of ancestor", "data rel")
	mustOK(t, "dom0 unwatch", d0.Unwatch("/w", "t1"))
	r0.expect(t, "dom0 stray")
	r1.expect(t, "dom1 stray")
}

func TestWatchPermissions(t *testing.T) {
	s := newStore(t, 1, 2)
	d0, _ := session(s, 0)
	d1, r1 := session(s, 1)
	d2, r2 := session(s, 2)
	base := "/local/domain/0/data"
	mustOK(t, "write", d0.Write(0, base+"/x", nil))
	// Watching an unreadable path is allowed, and fires on registration.
	mustOK(t, "watch", d1.Watch(base, "t"))
	r1.expect(t, "registration", base+" t")
	mustOK(t, "watch", d2.Watch(base, "t"))
	r2.expect(t, "registration", base+" t")

	mustOK(t, "write unreadable", d0.Write(0, base+"/x", []byte("1")))
	r1.expect(t, "unreadable write")
	// set_perms needs the old and the new permissions to allow reading.
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/x", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}}))
	r1.expect(t, "set_perms making it readable")
	mustOK(t, "write readable", d0.Write(0, base+"/x", []byte("2")))
	r1.expect(t, "readable write", base+"/x t")
	r2.expect(t, "dom2 cannot read")
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/x", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}, {Domain: 2, Access: xenstore.AccessRead}}))
	r1.expect(t, "set_perms readable before and after", base+"/x t")
	r2.expect(t, "set_perms unreadable before")
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/x", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 2, Access: xenstore.AccessRead}}))
	r1.expect(t, "set_perms unreadable after")
	r2.expect(t, "set_perms readable before and after", base+"/x t")
	// rm uses the permissions from before the removal.
	mustOK(t, "rm", d0.Rm(0, base+"/x"))
	r1.expect(t, "rm unreadable")
	r2.expect(t, "rm readable", base+"/x t")
	// Watches below a removed node: the deepest removed node decides.
	mustOK(t, "write", d0.Write(0, base+"/p/q", nil))
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/p/q", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}}))
	mustOK(t, "watch", d1.Watch(base+"/p/q/r", "below"))
	mustOK(t, "watch", d2.Watch(base+"/p/q/r", "below"))
	r1.take()
	r2.take()
	mustOK(t, "rm", d0.Rm(0, base+"/p"))
	r1.expect(t, "rm below, readable", base+"/p/q/r below")
	r2.expect(t, "rm below, unreadable")
}

func TestSpecialWatches(t *testing.T) {
	s := newStore(t, 1)
	d0, r0 := session(s, 0)
	d1, r1 := session(s, 1)
	mustOK(t, "watch", d0.Watch(xenstore.IntroduceDomainPath, "in"))
	mustOK(t, "watch", d0.Watch(xenstore.ReleaseDomainPath, "out"))
	mustOK(t, "watch", d1.Watch(xenstore.ReleaseDomainPath, "out1"))
	mustOK(t, "watch", d0.Watch("/local/domain", "dom"))
	r0.expect(t, "registration", "@introduceDomain in", "@releaseDomain out", "/local/domain dom")
	r1.expect(t, "registration", "@releaseDomain out1")

	mustOK(t, "introduce", s.IntroduceDomain(5))
	r0.expect(t, "introduce", "@introduceDomain in", "/local/domain/5 dom", "/local/domain/5/domid dom")
	r1.expect(t, "introduce")
	mustOK(t, "release", s.ReleaseDomain(5))
	r0.expect(t, "release", "@releaseDomain out", "/local/domain/5 dom")
	r1.expect(t, "release", "@releaseDomain out1")
	// Writes do not fire special watches.
	mustOK(t, "write", d0.Write(0, "/x", nil))
	r0.expect(t, "write")
	mustOK(t, "unwatch", d0.Unwatch(xenstore.ReleaseDomainPath, "out"))
	mustOK(t, "introduce", s.IntroduceDomain(6))
	mustOK(t, "release", s.ReleaseDomain(6))
	if evs := r0.take(); strings.Contains(strings.Join(evs, ","), "@releaseDomain") {
		t.Fatalf("unwatched special watch fired: %q", evs)
	}
}
