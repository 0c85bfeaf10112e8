package xssim

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

func TestRelativePaths(t *testing.T) {
	s := newStore(t, 1)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	mustOK(t, "write", d1.Write(0, "data/x", []byte("v")))
	mustOK(t, "mkdir", d1.Mkdir(0, "data/y"))
	v, err := d0.Read(0, "/local/domain/1/data/x")
	if err != nil || string(v) != "v" {
		t.Fatalf("dom0 read = %q, %v", v, err)
	}
	perms, _ := d0.GetPerms(0, "/local/domain/1/data/x")
	if string(xenstore.FormatPerms(perms)) != "n1\x00" {
		t.Fatalf("perms %q", xenstore.FormatPerms(perms))
	}
	names, err := d1.Directory(0, "data")
	if err != nil || !reflect.DeepEqual(names, []string{"x", "y"}) {
		t.Fatalf("directory = %q, %v", names, err)
	}
	v, err = d1.Read(0, "/local/domain/1/data/x")
	if err != nil || string(v) != "v" {
		t.Fatalf("absolute read = %q, %v", v, err)
	}
	// dom0's relative paths resolve against its own home.
	mustOK(t, "dom0 relative write", d0.Write(0, "data/z", nil))
	if _, err := d0.Read(0, "/local/domain/0/data/z"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../x", "data/", "", "data//x", "@releaseDomain", "data x"} {
		_, err := d1.Read(0, p)
		wantErr(t, fmt.Sprintf("read %q", p), err, syscall.EINVAL)
		wantErr(t, fmt.Sprintf("write %q", p), d1.Write(0, p, nil), syscall.EINVAL)
	}
}

func TestRm(t *testing.T) {
	s := newStore(t, 1)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	mustOK(t, "write", d0.Write(0, "/a/b/c", []byte("1")))
	mustOK(t, "write", d0.Write(0, "/a/b/d", []byte("2")))
	n := s.Len()
	wantErr(t, "rm absent, parent present", d0.Rm(0, "/a/b/missing"), 0)
	wantErr(t, "rm absent parent", d0.Rm(0, "/a/missing/x"), syscall.ENOENT)
	wantErr(t, "rm /", d0.Rm(0, "/"), syscall.EINVAL)
	wantErr(t, "dom1 rm", d1.Rm(0, "/a/b"), syscall.EACCES)
	wantErr(t, "dom1 rm hidden absent", d1.Rm(0, "/a/b/missing"), syscall.EACCES)
	wantErr(t, "dom1 rm own absent", d1.Rm(0, "missing"), 0)
	wantErr(t, "dom1 rm own absent parent", d1.Rm(0, "data/missing/x"), syscall.ENOENT)
	if s.Len() != n {
		t.Fatalf("Len changed from %d to %d", n, s.Len())
	}
	mustOK(t, "rm subtree", d0.Rm(0, "/a/b"))
	if s.Len() != n-3 {
		t.Fatalf("Len = %d, want %d", s.Len(), n-3)
	}
	names, err := d0.Directory(0, "/a")
	if err != nil || len(names) != 0 {
		t.Fatalf("directory /a = %q, %v", names, err)
	}
	_, err = d0.Read(0, "/a/b/c")
	wantErr(t, "read removed", err, syscall.ENOENT)
	// dom1 may remove what it may write, whatever lies below.
	mustOK(t, "dom1 write", d1.Write(0, "data/x/y", nil))
	mustOK(t, "dom0 write below", d0.Write(0, "/local/domain/1/data/x/y/z", nil))
	mustOK(t, "dom0 protect", d0.SetPerms(0, "/local/domain/1/data/x/y/z", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}}))
	mustOK(t, "dom1 rm", d1.Rm(0, "data"))
	if _, err := d0.Read(0, "/local/domain/1/data/x/y/z"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("read after rm: %v", err)
	}
}

func TestValues(t *testing.T) {
	s := newStore(t)
	d0, _ := session(s, 0)
	val := []byte("a\x00b\x00\xff")
	mustOK(t, "write", d0.Write(0, "/v", val))
	val[0] = 'X'
	got, err := d0.Read(0, "/v")
	if err != nil || string(got) != "a\x00b\x00\xff" {
		t.Fatalf("read = %q, %v", got, err)
	}
	got[1] = 'Y'
	again, _ := d0.Read(0, "/v")
	if string(again) != "a\x00b\x00\xff" {
		t.Fatalf("read returned internal slice: %q", again)
	}
	mustOK(t, "write empty", d0.Write(0, "/v", nil))
	got, err = d0.Read(0, "/v")
	if err != nil || len(got) != 0 {
		t.Fatalf("read empty = %q, %v", got, err)
	}
	big := bytes.Repeat([]byte{0xab}, 100000) // dom0 has no size quota
	mustOK(t, "write big", d0.Write(0, "/big", big))
	got, _ = d0.Read(0, "/big")
	if !bytes.Equal(got, big) {
		t.Fatal("big value mangled")
	}
	names, _ := d0.Directory(0, "/")
	names[0] = "zzz"
	names, _ = d0.Directory(0, "/")
	if !reflect.DeepEqual(names, []string{"big", "local", "v"}) {
		t.Fatalf("directory / = %q", names)
	}
}

func TestSessionClose(t *testing.T) {
	s := newStore(t, 1)
	n := s.Len()
	c, r := session(s, 1)
	tx, _ := c.TransactionStart()
	mustOK(t, "tx write", c.Write(tx, "data/x", nil))
	mustOK(t, "watch", c.Watch("data", "w"))
	r.take()
	c.Close()
	c.Close()
	wantErr(t, "write after close", c.Write(0, "data/y", nil), syscall.ENOTCONN)
	_, err := c.TransactionStart()
	wantErr(t, "start after close", err, syscall.ENOTCONN)
	wantErr(t, "watch after close", c.Watch("data", "v"), syscall.ENOTCONN)
	d0, _ := session(s, 0)
	mustOK(t, "write", d0.Write(0, "/local/domain/1/data/z", nil))
	r.expect(t, "no events after close")
	if s.Len() != n+2 {
		t.Fatalf("Len = %d, want %d (the transaction was not aborted?)", s.Len(), n+2)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchCount[1] != 0 || s.snapRefs != 0 || len(s.sessions) != 1 {
		t.Fatalf("leak: watches %d snapRefs %d sessions %d", s.watchCount[1], s.snapRefs, len(s.sessions))
	}
}

func TestDeliverMayCallBack(t *testing.T) {
	s := newStore(t)
	var c *Session
	got := make(chan string, 4)
	c = s.NewSession(0, func(path, token string) {
		v, err := c.Read(0, "/x")
		if err != nil {
			got <- "error " + err.Error()
			return
		}
		got <- path + "=" + string(v)
	})
	mustOK(t, "write", c.Write(0, "/x", []byte("1")))
	mustOK(t, "watch", c.Watch("/x", "t"))
	mustOK(t, "write", c.Write(0, "/x", []byte("2")))
	close(got)
	var evs []string
	for e := range got {
		evs = append(evs, e)
	}
	if !reflect.DeepEqual(evs, []string{"/x=1", "/x=2"}) {
		t.Fatalf("events %q", evs)
	}
	s.NewSession(1, nil).Close() // a nil deliver is allowed
}

func TestErrorFormat(t *testing.T) {
	s := newStore(t, 1)
	d1, _ := session(s, 1)
	_, err := d1.Read(0, "/secret")
	var xe *xenstore.Error
	if !errors.As(err, &xe) || xe.Op != "read" || xe.Path != "/secret" || xe.Err != syscall.EACCES {
		t.Fatalf("error %#v", err)
	}
	for _, tc := range []struct {
		err error
		op  string
	}{
		{d1.Write(0, "/x", nil), "write"},
		{d1.Mkdir(0, "/x"), "mkdir"},
		{d1.Rm(0, "/local"), "rm"},
		{d1.SetPerms(0, "/local", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessNone}}), "set_perms"},
		{d1.Unwatch("/x", "t"), "unwatch"},
		{d1.Watch("bad/", "t"), "watch"},
		{d1.TransactionEnd(99, true), "transaction_end"},
	} {
		if !errors.As(tc.err, &xe) || xe.Op != tc.op {
			t.Errorf("error %v: op %q, want %q", tc.err, xe.Op, tc.op)
		}
	}
	_, err = d1.Directory(0, "/")
	if !errors.As(err, &xe) || xe.Op != "directory" {
		t.Errorf("directory error %v", err)
	}
	_, err = d1.GetPerms(0, "/")
	if !errors.As(err, &xe) || xe.Op != "get_perms" {
		t.Errorf("get_perms error %v", err)
	}
}
