package xenstore

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Events are delivered synchronously, in the goroutine of the operation that
// caused them, before that operation returns; the tests rely on that to check
// events right after each operation.

func newStore(t *testing.T, doms ...uint16) *Store {
	t.Helper()
	s := NewStore(DefaultLimits())
	for _, d := range append([]uint16{0}, doms...) {
		if err := s.IntroduceDomain(d); err != nil {
			t.Fatalf("IntroduceDomain(%d): %v", d, err)
		}
	}
	return s
}

// wantErr checks that err wraps errno (0: no error) and is an *Error.
func wantErr(t *testing.T, what string, err error, errno syscall.Errno) {
	t.Helper()
	if errno == 0 {
		if err != nil {
			t.Errorf("%s: unexpected error %v", what, err)
		}
		return
	}
	if !errors.Is(err, errno) {
		t.Errorf("%s: error %v, want %v", what, err, errno.Error())
		return
	}
	var xe *Error
	if !errors.As(err, &xe) {
		t.Errorf("%s: error %v is not a *Error", what, err)
	}
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// recorder collects the watch events of a session.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) deliver(path, token string) {
	r.mu.Lock()
	r.evs = append(r.evs, path+" "+token)
	r.mu.Unlock()
}

// take returns the events so far, sorted, and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	sort.Strings(evs)
	return evs
}

func (r *recorder) expect(t *testing.T, what string, want ...string) {
	t.Helper()
	got := r.take()
	sort.Strings(want)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: events %q, want %q", what, got, want)
	}
}

func session(s *Store, d uint16) (*Session, *recorder) {
	r := &recorder{}
	return s.NewSession(d, r.deliver), r
}

// next returns the pending event of w. Events are delivered before the
// operation causing them returns, so one must be pending already.
func next(t *testing.T, w Watch) string {
	t.Helper()
	select {
	case p, ok := <-w.Events():
		if !ok {
			t.Fatal("watch channel closed")
		}
		return p
	default:
		t.Fatal("no watch event pending")
		return ""
	}
}

// wantClosed drains w's channel and checks that it is closed.
func wantClosed(t *testing.T, w Watch) {
	t.Helper()
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				return
			}
		default:
			t.Fatal("watch channel not closed")
		}
	}
}

func walkPaths(s *Store) []string {
	var ps []string
	s.Walk(func(p string, _ []byte, _ []Perm) { ps = append(ps, p) })
	return ps
}

func TestNewStore(t *testing.T) {
	s := NewStore(DefaultLimits())
	if n := s.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	var got []string
	s.Walk(func(p string, v []byte, perms []Perm) {
		got = append(got, fmt.Sprintf("%s=%q %s", p, v, FormatPerms(perms)))
	})
	want := []string{`/="" n0` + "\x00", `/local="" n0` + "\x00", `/local/domain="" n0` + "\x00"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Walk = %q, want %q", got, want)
	}
	if DefaultLimits() != (Limits{Nodes: 1000, Watches: 128, Transactions: 10, NodeSize: 2048, PermEntries: 5}) {
		t.Fatalf("DefaultLimits = %+v", DefaultLimits())
	}
}

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
		if string(v) != tc.value || string(FormatPerms(p)) != tc.perms {
			t.Errorf("%s = %q %q, want %q %q", tc.path, v, FormatPerms(p), tc.value, tc.perms)
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
		perms, err := ParsePerms([]byte(st.perms))
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
	mustOK(t, "set_perms", d0.SetPerms(0, "/t", []Perm{{0, AccessNone}, {1, AccessBoth}, {2, AccessRead}}))

	// dom1 creates two levels: both inherit, with dom1 as owner and the
	// default letter kept.
	mustOK(t, "dom1 write", d1.Write(0, "/t/x/y", []byte("v")))
	for _, p := range []string{"/t/x", "/t/x/y"} {
		perms, err := d0.GetPerms(0, p)
		mustOK(t, "get_perms", err)
		if got := string(FormatPerms(perms)); got != "n1\x00b1\x00r2\x00" {
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
	if got := string(FormatPerms(perms)); got != "n1\x00b1\x00r2\x00" {
		t.Errorf("dom0-created perms %q", got)
	}
	mustOK(t, "dom0 mkdir", d0.Mkdir(0, "/t/w"))
	perms, _ = d0.GetPerms(0, "/t/w")
	if got := string(FormatPerms(perms)); got != "n0\x00b1\x00r2\x00" {
		t.Errorf("dom0-created perms %q", got)
	}
}

func TestEACCESvsENOENT(t *testing.T) {
	s := newStore(t, 1)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	mustOK(t, "write", d0.Write(0, "/secret/x", []byte("s")))
	mustOK(t, "write", d0.Write(0, "/open/x", []byte("o")))
	mustOK(t, "set_perms", d0.SetPerms(0, "/open", []Perm{{0, AccessRead}}))
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
	wantErr(t, "dom1 set_perms missing", d1.SetPerms(0, "/open/missing", []Perm{{1, AccessNone}}), syscall.ENOENT)
	wantErr(t, "dom1 set_perms hidden", d1.SetPerms(0, "/secret/missing", []Perm{{1, AccessNone}}), syscall.EACCES)
}

// TestVchanPattern is what a vchan server and client do (docs/PROTOCOL.md §9).
func TestVchanPattern(t *testing.T) {
	s := newStore(t, 1, 2)
	server := s.Connect(0)
	defer server.Close()
	client := s.Connect(1)
	defer client.Close()
	other := s.Connect(2)
	defer other.Close()

	base := "/local/domain/0/data/vchan/1/5"
	w, err := client.Watch(base + "/event-channel")
	mustOK(t, "watch", err)
	if p := next(t, w); p != base+"/event-channel" {
		t.Fatalf("initial event %q", p)
	}

	perms := []Perm{{0, AccessNone}, {1, AccessRead}}
	err = Update(server, func(tx Ops) error {
		dom, err := tx.Read("domid")
		if err != nil {
			return err
		}
		if string(dom) != "0" {
			return fmt.Errorf("domid %q", dom)
		}
		for _, kv := range [][2]string{{"ring-ref", "123"}, {"event-channel", "45"}} {
			p := "data/vchan/1/5/" + kv[0] // relative, as Qubes does
			if err := tx.Write(p, []byte(kv[1])); err != nil {
				return err
			}
			if err := tx.SetPerms(p, perms); err != nil {
				return err
			}
		}
		return nil
	})
	mustOK(t, "server update", err)

	select {
	case p := <-w.Events():
		if p != base+"/event-channel" {
			t.Fatalf("event %q", p)
		}
	default:
		t.Fatal("no event for the client after the server's commit")
	}

	got, err := server.GetPerms(base + "/ring-ref")
	mustOK(t, "get_perms", err)
	if string(FormatPerms(got)) != "n0\x00r1\x00" {
		t.Fatalf("perms %q", FormatPerms(got))
	}
	v, err := client.Read(base + "/ring-ref")
	if err != nil || string(v) != "123" {
		t.Fatalf("client read ring-ref = %q, %v", v, err)
	}
	v, err = client.Read(base + "/event-channel")
	if err != nil || string(v) != "45" {
		t.Fatalf("client read event-channel = %q, %v", v, err)
	}
	wantErr(t, "client write", client.Write(base+"/ring-ref", []byte("1")), syscall.EACCES)
	wantErr(t, "client rm", client.Rm(base+"/ring-ref"), syscall.EACCES)
	wantErr(t, "client set_perms", client.SetPerms(base+"/ring-ref", []Perm{{1, AccessBoth}}), syscall.EACCES)
	_, err = client.Directory(base)
	wantErr(t, "client directory", err, syscall.EACCES) // "might not have access to the whole directory"
	_, err = other.Read(base + "/ring-ref")
	wantErr(t, "dom2 read", err, syscall.EACCES)
	_, err = other.Read(base + "/event-channel")
	wantErr(t, "dom2 read", err, syscall.EACCES)
}

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
	if string(FormatPerms(perms)) != "n1\x00" {
		t.Fatalf("perms %q", FormatPerms(perms))
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
	mustOK(t, "dom0 protect", d0.SetPerms(0, "/local/domain/1/data/x/y/z", []Perm{{0, AccessNone}}))
	mustOK(t, "dom1 rm", d1.Rm(0, "data"))
	if _, err := d0.Read(0, "/local/domain/1/data/x/y/z"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("read after rm: %v", err)
	}
}

func TestSetPerms(t *testing.T) {
	s := newStore(t, 1, 2)
	d0, _ := session(s, 0)
	d1, _ := session(s, 1)
	mustOK(t, "write", d0.Write(0, "/t/x", nil))
	mustOK(t, "set_perms", d0.SetPerms(0, "/t/x", []Perm{{0, AccessNone}, {1, AccessBoth}}))
	wantErr(t, "empty", d0.SetPerms(0, "/t/x", nil), syscall.EINVAL)
	wantErr(t, "bad letter", d0.SetPerms(0, "/t/x", []Perm{{0, 'x'}}), syscall.EINVAL)
	wantErr(t, "bad path", d0.SetPerms(0, "/t/x/", []Perm{{0, AccessNone}}), syscall.EINVAL)
	// dom1 may write /t/x but does not own it.
	mustOK(t, "dom1 write", d1.Write(0, "/t/x", []byte("v")))
	wantErr(t, "dom1 set_perms non-owner", d1.SetPerms(0, "/t/x", []Perm{{0, AccessNone}, {1, AccessBoth}}), syscall.EACCES)
	// dom1 owns its data but cannot give it away.
	mustOK(t, "dom1 write own", d1.Write(0, "data/y", nil))
	wantErr(t, "dom1 chown", d1.SetPerms(0, "data/y", []Perm{{2, AccessNone}}), syscall.EPERM)
	mustOK(t, "dom1 set_perms own", d1.SetPerms(0, "data/y", []Perm{{1, AccessRead}, {2, AccessNone}}))
	// dom0 may change the owner.
	mustOK(t, "dom0 chown", d0.SetPerms(0, "/local/domain/1/data/y", []Perm{{2, AccessNone}}))
	wantErr(t, "dom1 write after chown", d1.Write(0, "data/y", nil), syscall.EACCES)
	// get_perms returns a copy.
	perms, _ := d0.GetPerms(0, "/t/x")
	perms[0].Domain = 9
	perms2, _ := d0.GetPerms(0, "/t/x")
	if perms2[0].Domain != 0 {
		t.Fatal("get_perms returned internal state")
	}
	// set_perms copies its argument.
	in := []Perm{{0, AccessRead}}
	mustOK(t, "set", d0.SetPerms(0, "/t/x", in))
	in[0].Access = AccessNone
	perms, _ = d0.GetPerms(0, "/t/x")
	if perms[0].Access != AccessRead {
		t.Fatal("set_perms kept the caller's slice")
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
	mustOK(t, "set_perms", d0.SetPerms(0, "/w/a", []Perm{{0, AccessRead}}))
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
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/x", []Perm{{0, AccessNone}, {1, AccessRead}}))
	r1.expect(t, "set_perms making it readable")
	mustOK(t, "write readable", d0.Write(0, base+"/x", []byte("2")))
	r1.expect(t, "readable write", base+"/x t")
	r2.expect(t, "dom2 cannot read")
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/x", []Perm{{0, AccessNone}, {1, AccessRead}, {2, AccessRead}}))
	r1.expect(t, "set_perms readable before and after", base+"/x t")
	r2.expect(t, "set_perms unreadable before")
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/x", []Perm{{0, AccessNone}, {2, AccessRead}}))
	r1.expect(t, "set_perms unreadable after")
	r2.expect(t, "set_perms readable before and after", base+"/x t")
	// rm uses the permissions from before the removal.
	mustOK(t, "rm", d0.Rm(0, base+"/x"))
	r1.expect(t, "rm unreadable")
	r2.expect(t, "rm readable", base+"/x t")
	// Watches below a removed node: the deepest removed node decides.
	mustOK(t, "write", d0.Write(0, base+"/p/q", nil))
	mustOK(t, "set_perms", d0.SetPerms(0, base+"/p/q", []Perm{{0, AccessNone}, {1, AccessRead}}))
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
	mustOK(t, "watch", d0.Watch(IntroduceDomainPath, "in"))
	mustOK(t, "watch", d0.Watch(ReleaseDomainPath, "out"))
	mustOK(t, "watch", d1.Watch(ReleaseDomainPath, "out1"))
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
	mustOK(t, "unwatch", d0.Unwatch(ReleaseDomainPath, "out"))
	mustOK(t, "introduce", s.IntroduceDomain(6))
	mustOK(t, "release", s.ReleaseDomain(6))
	if evs := r0.take(); strings.Contains(strings.Join(evs, ","), "@releaseDomain") {
		t.Fatalf("unwatched special watch fired: %q", evs)
	}
}

func TestTransactionIsolation(t *testing.T) {
	s := newStore(t)
	d0, _ := session(s, 0)
	other, _ := session(s, 0)
	mustOK(t, "write", d0.Write(0, "/t/v", []byte("1")))
	n := s.Len()

	tx, err := d0.TransactionStart()
	mustOK(t, "start", err)
	if tx == 0 {
		t.Fatal("transaction id 0")
	}
	mustOK(t, "other write", other.Write(0, "/t/v", []byte("2")))
	v, err := d0.Read(tx, "/t/v")
	if err != nil || string(v) != "1" {
		t.Fatalf("tx read = %q, %v; want the snapshot", v, err)
	}
	mustOK(t, "tx write", d0.Write(tx, "/t/w/x", []byte("new")))
	mustOK(t, "tx rm", d0.Rm(tx, "/t/v"))
	if v, err := d0.Read(tx, "/t/w/x"); err != nil || string(v) != "new" {
		t.Fatalf("tx read own write = %q, %v", v, err)
	}
	if _, err := d0.Read(tx, "/t/v"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("tx read own rm: %v", err)
	}
	names, _ := d0.Directory(tx, "/t")
	if !reflect.DeepEqual(names, []string{"w"}) {
		t.Fatalf("tx directory = %q", names)
	}
	if _, err := other.Read(0, "/t/w/x"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("uncommitted write visible: %v", err)
	}
	if v, _ := other.Read(0, "/t/v"); string(v) != "2" {
		t.Fatalf("uncommitted rm visible: %q", v)
	}
	err = d0.TransactionEnd(tx, true)
	wantErr(t, "commit", err, syscall.EAGAIN)
	var xe *Error
	if !errors.As(err, &xe) || xe.Op != "transaction_end" {
		t.Fatalf("commit error %#v", err)
	}
	// Nothing applied.
	if _, err := other.Read(0, "/t/w"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("partial apply: %v", err)
	}
	if v, _ := other.Read(0, "/t/v"); string(v) != "2" {
		t.Fatalf("partial apply: /t/v = %q", v)
	}
	if s.Len() != n {
		t.Fatalf("Len %d, want %d", s.Len(), n)
	}
	// The transaction is over.
	wantErr(t, "end again", d0.TransactionEnd(tx, true), syscall.ENOENT)
	_, err = d0.Read(tx, "/t/v")
	wantErr(t, "read in ended tx", err, syscall.ENOENT)
}

func TestTransactionConflicts(t *testing.T) {
	type step func(c *Session, tx uint32) error
	read := func(p string) step {
		return func(c *Session, tx uint32) error { _, err := c.Read(tx, p); return err }
	}
	write := func(p string) step {
		return func(c *Session, tx uint32) error { return c.Write(tx, p, []byte("tx")) }
	}
	tests := []struct {
		name   string
		inTx   step
		other  func(c *Session) error
		result syscall.Errno
	}{
		{"read, other writes it", read("/t/a"), func(c *Session) error { return c.Write(0, "/t/a", []byte("o")) }, syscall.EAGAIN},
		{"write, other writes it", write("/t/a"), func(c *Session) error { return c.Write(0, "/t/a", []byte("o")) }, syscall.EAGAIN},
		{"write, other removes it", write("/t/a"), func(c *Session) error { return c.Rm(0, "/t/a") }, syscall.EAGAIN},
		{"write, other sets perms", write("/t/a"), func(c *Session) error { return c.SetPerms(0, "/t/a", []Perm{{0, AccessRead}}) }, syscall.EAGAIN},
		{"read absent, other creates it", read("/t/new"), func(c *Session) error { return c.Write(0, "/t/new", nil) }, syscall.EAGAIN},
		{"create, other creates it", write("/t/new"), func(c *Session) error { return c.Write(0, "/t/new", nil) }, syscall.EAGAIN},
		{"create, other creates a sibling", write("/t/new"), func(c *Session) error { return c.Write(0, "/t/sib", nil) }, syscall.EAGAIN},
		{"directory, other adds a child", func(c *Session, tx uint32) error { _, err := c.Directory(tx, "/t"); return err },
			func(c *Session) error { return c.Mkdir(0, "/t/c") }, syscall.EAGAIN},
		{"rm, other writes below", func(c *Session, tx uint32) error { return c.Rm(tx, "/t") },
			func(c *Session) error { return c.Write(0, "/t/a/deeper", nil) }, syscall.EAGAIN},
		{"write, other writes elsewhere", write("/t/a"), func(c *Session) error { return c.Write(0, "/t/b", []byte("o")) }, 0},
		{"write existing, other writes a sibling", write("/t/a"), func(c *Session) error { return c.Write(0, "/t/b", []byte("o")) }, 0},
		{"read, other writes below", read("/t/a"), func(c *Session) error { return c.Write(0, "/t/b/x", nil) }, 0},
		{"create, other writes unrelated", write("/t/new"), func(c *Session) error { return c.Write(0, "/u", nil) }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			c, _ := session(s, 0)
			o, _ := session(s, 0)
			mustOK(t, "setup", c.Write(0, "/t/a", []byte("0")))
			mustOK(t, "setup", c.Write(0, "/t/b/x", []byte("0")))
			tx, err := c.TransactionStart()
			mustOK(t, "start", err)
			if err := tc.inTx(c, tx); err != nil && !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("in tx: %v", err)
			}
			mustOK(t, "other", tc.other(o))
			before := walkPaths(s)
			err = c.TransactionEnd(tx, true)
			wantErr(t, "commit", err, tc.result)
			if tc.result != 0 && !reflect.DeepEqual(before, walkPaths(s)) {
				t.Fatal("failed commit changed the store")
			}
		})
	}
}

func TestTransactionAbort(t *testing.T) {
	s := newStore(t, 1)
	c, r := session(s, 0)
	mustOK(t, "write", c.Write(0, "/t/a", []byte("0")))
	mustOK(t, "watch", c.Watch("/t", "w"))
	r.take()
	var before []string
	s.Walk(func(p string, v []byte, perms []Perm) {
		before = append(before, fmt.Sprintf("%s=%q %v", p, v, perms))
	})
	tx, err := c.TransactionStart()
	mustOK(t, "start", err)
	mustOK(t, "tx write", c.Write(tx, "/t/a", []byte("1")))
	mustOK(t, "tx write", c.Write(tx, "/t/b/c", []byte("1")))
	mustOK(t, "tx set_perms", c.SetPerms(tx, "/t", []Perm{{1, AccessNone}}))
	mustOK(t, "tx rm", c.Rm(tx, "/local"))
	mustOK(t, "abort", c.TransactionEnd(tx, false))
	var after []string
	s.Walk(func(p string, v []byte, perms []Perm) {
		after = append(after, fmt.Sprintf("%s=%q %v", p, v, perms))
	})
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("abort changed the store:\n%q\n%q", before, after)
	}
	r.expect(t, "abort fires nothing")
	wantErr(t, "abort again", c.TransactionEnd(tx, false), syscall.ENOENT)
	wantErr(t, "unknown tx", c.TransactionEnd(12345, true), syscall.ENOENT)
	_, err = c.Read(12345, "/t/a")
	wantErr(t, "read unknown tx", err, syscall.ENOENT)
	wantErr(t, "write unknown tx", c.Write(12345, "/t/a", nil), syscall.ENOENT)
	// Another session's transaction id is unknown here.
	o, _ := session(s, 0)
	otx, err := o.TransactionStart()
	mustOK(t, "start", err)
	wantErr(t, "foreign tx", c.Write(otx, "/t/a", nil), syscall.ENOENT)
	wantErr(t, "foreign tx end", c.TransactionEnd(otx, true), syscall.ENOENT)
	mustOK(t, "owner ends it", o.TransactionEnd(otx, true))
}

func TestTransactionWatchesFireAtCommit(t *testing.T) {
	s := newStore(t, 1)
	c, _ := session(s, 0)
	w, r := session(s, 1)
	mustOK(t, "write", c.Write(0, "/local/domain/1/data/a", nil))
	mustOK(t, "watch", w.Watch("data", "w"))
	r.take()
	tx, err := c.TransactionStart()
	mustOK(t, "start", err)
	mustOK(t, "tx write", c.Write(tx, "/local/domain/1/data/a", []byte("1")))
	mustOK(t, "tx write", c.Write(tx, "/local/domain/1/data/a", []byte("2")))
	mustOK(t, "tx write", c.Write(tx, "/local/domain/1/data/b/c", []byte("1")))
	mustOK(t, "tx rm", c.Rm(tx, "/local/domain/1/data/b"))
	mustOK(t, "tx mkdir", c.Mkdir(tx, "/local/domain/1/data/d"))
	r.expect(t, "before commit")
	mustOK(t, "commit", c.TransactionEnd(tx, true))
	// One event per changed path (duplicates merged); the node written and
	// then removed inside the transaction fires only through the rm.
	r.expect(t, "after commit", "data/a w", "data/b w", "data/d w")
	v, _ := w.Read(0, "data/a")
	if string(v) != "2" {
		t.Fatalf("committed value %q", v)
	}
}

func TestUpdateRetries(t *testing.T) {
	s := newStore(t)
	c := s.Connect(0)
	defer c.Close()
	o := s.Connect(0)
	defer o.Close()
	mustOK(t, "write", c.Write("/counter", []byte("0")))
	attempts := 0
	err := Update(c, func(tx Ops) error {
		attempts++
		v, err := tx.Read("/counter")
		if err != nil {
			return err
		}
		if attempts == 1 {
			// A concurrent writer sneaks in.
			if err := o.Write("/counter", []byte("10")); err != nil {
				return err
			}
		}
		n, _ := strconv.Atoi(string(v))
		return tx.Write("/counter", []byte(strconv.Itoa(n+1)))
	})
	mustOK(t, "update", err)
	if attempts != 2 {
		t.Fatalf("attempts = %d, want 2", attempts)
	}
	if v, _ := c.Read("/counter"); string(v) != "11" {
		t.Fatalf("counter = %q, want 11", v)
	}

	// A writer that always interferes makes Update give up with EAGAIN.
	attempts = 0
	err = Update(c, func(tx Ops) error {
		attempts++
		if _, err := tx.Read("/counter"); err != nil {
			return err
		}
		return o.Write("/counter", []byte("x"))
	})
	if !errors.Is(err, syscall.EAGAIN) || attempts != MaxUpdateAttempts {
		t.Fatalf("Update = %v after %d attempts", err, attempts)
	}
	// An error from fn aborts.
	sentinel := errors.New("stop")
	err = Update(c, func(tx Ops) error {
		if err := tx.Write("/aborted", nil); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("Update = %v", err)
	}
	if _, err := c.Read("/aborted"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("aborted write applied: %v", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	s := newStore(t, 1)
	const workers, increments = 6, 40
	setup := s.Connect(1)
	mustOK(t, "write", setup.Write("data/counter", []byte("0")))
	watcher, err := setup.Watch("data/counter")
	mustOK(t, "watch", err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range watcher.Events() {
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(dom uint16) {
			defer wg.Done()
			c := s.Connect(dom)
			defer c.Close()
			for k := 0; k < increments; k++ {
				for {
					err := Update(c, func(tx Ops) error {
						v, err := tx.Read("/local/domain/1/data/counter")
						if err != nil {
							return err
						}
						n, err := strconv.Atoi(string(v))
						if err != nil {
							return err
						}
						return tx.Write("/local/domain/1/data/counter", []byte(strconv.Itoa(n+1)))
					})
					if err == nil {
						break
					}
					if !errors.Is(err, syscall.EAGAIN) { // starved: try again
						errs <- err
						return
					}
				}
			}
		}(uint16(i % 2)) // dom0 and dom1 alternately
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, err := setup.Read("data/counter")
	mustOK(t, "read", err)
	if want := strconv.Itoa(workers * increments); string(v) != want {
		t.Fatalf("counter = %s, want %s", v, want)
	}
	mustOK(t, "close watch", watcher.Close())
	<-done
	s.mu.Lock()
	refs := s.snapRefs
	s.mu.Unlock()
	if refs != 0 {
		t.Fatalf("snapRefs = %d after all transactions ended", refs)
	}
}

func TestTransactionQuota(t *testing.T) {
	s := newStore(t, 1)
	d1, _ := session(s, 1)
	var ids []uint32
	for i := 0; i < 10; i++ {
		id, err := d1.TransactionStart()
		mustOK(t, "start", err)
		ids = append(ids, id)
	}
	_, err := d1.TransactionStart()
	wantErr(t, "11th transaction", err, syscall.ENOSPC)
	mustOK(t, "end", d1.TransactionEnd(ids[0], false))
	_, err = d1.TransactionStart()
	mustOK(t, "start after end", err)
	// The quota is per connection.
	other, _ := session(s, 1)
	_, err = other.TransactionStart()
	mustOK(t, "other connection", err)
	d1.Close()
	d1b, _ := session(s, 1)
	for i := 0; i < 9; i++ {
		_, err := d1b.TransactionStart()
		mustOK(t, "start on new session", err)
	}
	d0, _ := session(s, 0)
	for i := 0; i < 50; i++ {
		_, err := d0.TransactionStart()
		mustOK(t, "dom0 start", err)
	}
}

func TestWatchQuota(t *testing.T) {
	s := newStore(t, 1)
	a, _ := session(s, 1)
	b, _ := session(s, 1)
	for i := 0; i < 100; i++ {
		mustOK(t, "watch", a.Watch("data", strconv.Itoa(i)))
	}
	for i := 0; i < 28; i++ {
		mustOK(t, "watch", b.Watch("data", strconv.Itoa(i)))
	}
	wantErr(t, "129th watch", b.Watch("data", "x"), syscall.E2BIG)
	wantErr(t, "129th watch", a.Watch("data", "x"), syscall.E2BIG)
	mustOK(t, "unwatch", a.Unwatch("data", "0"))
	mustOK(t, "watch after unwatch", b.Watch("data", "x"))
	wantErr(t, "over again", b.Watch("data", "y"), syscall.E2BIG)
	a.Close()
	for i := 0; i < 99; i++ {
		mustOK(t, "watch after close", b.Watch("/x", strconv.Itoa(i)))
	}
	wantErr(t, "over after refill", b.Watch("/x", "last"), syscall.E2BIG)
	d0, _ := session(s, 0)
	for i := 0; i < 300; i++ {
		mustOK(t, "dom0 watch", d0.Watch("/", strconv.Itoa(i)))
	}
}

func TestNodeQuota(t *testing.T) {
	s := NewStore(Limits{Nodes: 6})
	mustOK(t, "introduce", s.IntroduceDomain(1)) // the home is dom1's first node
	d1, _ := session(s, 1)
	d0, _ := session(s, 0)
	mustOK(t, "write", d1.Write(0, "data/a", nil)) // 3
	mustOK(t, "write", d1.Write(0, "data/b", nil)) // 4
	wantErr(t, "three more at once", d1.Write(0, "data/c/d/e", nil), syscall.ENOSPC)
	if _, err := d0.Read(0, "/local/domain/1/data/c"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("failed write left nodes: %v", err)
	}
	mustOK(t, "write", d1.Write(0, "data/c/d", nil)) // 6
	wantErr(t, "7th node", d1.Mkdir(0, "data/x"), syscall.ENOSPC)
	mustOK(t, "overwrite is fine", d1.Write(0, "data/a", []byte("v")))
	mustOK(t, "rm frees", d1.Rm(0, "data/c"))
	mustOK(t, "write after rm", d1.Mkdir(0, "data/x")) // 5
	// Nodes dom0 creates inherit the owner (dom1 here) but dom0 is not
	// limited; nodes owned by dom0 do not count against dom1.
	mustOK(t, "dom0 write", d0.Write(0, "/local/domain/1/data/y", nil)) // 6
	wantErr(t, "dom1 full", d1.Mkdir(0, "data/full"), syscall.ENOSPC)
	mustOK(t, "dom0 chown", d0.SetPerms(0, "/local/domain/1/data/y", []Perm{{0, AccessNone}, {1, AccessBoth}})) // 5
	for i := 0; i < 20; i++ {
		mustOK(t, "dom0 unlimited", d0.Write(0, "/local/domain/0/n"+strconv.Itoa(i), nil))
	}
	// Transactions count their own creations and are checked at commit.
	tx1, _ := d1.TransactionStart()
	tx2, _ := d1.TransactionStart()
	mustOK(t, "tx1 write", d1.Write(tx1, "data/p", nil)) // 6 in tx1
	wantErr(t, "tx1 over", d1.Write(tx1, "data/q", nil), syscall.ENOSPC)
	mustOK(t, "tx2 write", d1.Write(tx2, "data/y/q", nil)) // 6 in tx2 (data/y is dom0's)
	mustOK(t, "tx1 commit", d1.TransactionEnd(tx1, true))
	// tx2 does not conflict with tx1 (it did not touch data/), but together
	// they exceed the quota.
	wantErr(t, "tx2 commit over quota", d1.TransactionEnd(tx2, true), syscall.ENOSPC)
	if _, err := d0.Read(0, "/local/domain/1/data/y/q"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("over-quota commit applied: %v", err)
	}
}

func TestNodeQuotaAtCommit(t *testing.T) {
	s := NewStore(Limits{Nodes: 3})
	mustOK(t, "introduce", s.IntroduceDomain(1)) // 1 node
	d1, _ := session(s, 1)
	tx1, _ := d1.TransactionStart()
	tx2, _ := d1.TransactionStart()
	mustOK(t, "tx1", d1.Write(tx1, "a", nil))   // 2 in tx1
	mustOK(t, "tx2", d1.Write(tx2, "b/c", nil)) // 3 in tx2
	mustOK(t, "tx1 commit", d1.TransactionEnd(tx1, true))
	// tx2 touched nothing tx1 changed except the home's child list, so
	// whichever error wins, nothing is applied.
	if err := d1.TransactionEnd(tx2, true); err == nil {
		t.Fatal("tx2 committed over quota")
	}
	// With disjoint parents the quota check is what stops it.
	mustOK(t, "mkdir", d1.Rm(0, "a"))
	s2 := NewStore(Limits{Nodes: 4})
	mustOK(t, "introduce", s2.IntroduceDomain(1))
	d0, _ := session(s2, 0)
	mustOK(t, "dom0 dirs", d0.Write(0, "/local/domain/1/x", nil))
	mustOK(t, "dom0 dirs", d0.Write(0, "/local/domain/1/y", nil))
	mustOK(t, "perms", d0.SetPerms(0, "/local/domain/1/x", []Perm{{0, AccessNone}, {1, AccessBoth}}))
	mustOK(t, "perms", d0.SetPerms(0, "/local/domain/1/y", []Perm{{0, AccessNone}, {1, AccessBoth}}))
	e1, _ := session(s2, 1)
	t1, _ := e1.TransactionStart()
	t2, _ := e1.TransactionStart()
	mustOK(t, "t1", e1.Write(t1, "x/a/b", nil)) // 3
	mustOK(t, "t2", e1.Write(t2, "y/a/b", nil)) // 3
	mustOK(t, "t1 commit", e1.TransactionEnd(t1, true))
	wantErr(t, "t2 commit", e1.TransactionEnd(t2, true), syscall.ENOSPC)
}

func TestNodeSizeQuota(t *testing.T) {
	s := newStore(t, 1)
	d1, _ := session(s, 1)
	d0, _ := session(s, 0)
	fits := make([]byte, 2048-8) // one permission entry: 8 bytes
	mustOK(t, "max size", d1.Write(0, "data/a", fits))
	wantErr(t, "one byte more", d1.Write(0, "data/a", append(fits, 0)), syscall.ENOSPC)
	wantErr(t, "create too big", d1.Write(0, "data/b", make([]byte, 4000)), syscall.ENOSPC)
	if _, err := d1.Read(0, "data/b"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("too-big create left a node: %v", err)
	}
	// More permission entries make the node bigger.
	wantErr(t, "perms grow the node", d1.SetPerms(0, "data/a", []Perm{{1, AccessNone}, {0, AccessRead}}), syscall.ENOSPC)
	mustOK(t, "dom0 unlimited", d0.Write(0, "/local/domain/1/data/a", make([]byte, 4000)))
	if NodeSize(make([]byte, 10), make([]Perm, 3)) != 34 {
		t.Fatal("NodeSize")
	}
}

func TestPermEntriesQuota(t *testing.T) {
	s := newStore(t, 1)
	d1, _ := session(s, 1)
	d0, _ := session(s, 0)
	mustOK(t, "write", d1.Write(0, "data/a", nil))
	five := []Perm{{1, AccessNone}, {2, AccessRead}, {3, AccessRead}, {4, AccessRead}, {5, AccessRead}}
	mustOK(t, "5 entries", d1.SetPerms(0, "data/a", five))
	six := append(append([]Perm{}, five...), Perm{6, AccessRead})
	wantErr(t, "6 entries", d1.SetPerms(0, "data/a", six), syscall.ENOSPC)
	mustOK(t, "dom0 6 entries", d0.SetPerms(0, "/local/domain/1/data/a", six))
	many := make([]Perm, 100)
	for i := range many {
		many[i] = Perm{uint16(i), AccessRead}
	}
	mustOK(t, "dom0 write", d0.Write(0, "/x", nil))
	mustOK(t, "dom0 100 entries", d0.SetPerms(0, "/x", many))
}

func TestReleaseDomain(t *testing.T) {
	s := newStore(t)
	n0 := s.Len()
	mustOK(t, "introduce", s.IntroduceDomain(1))
	d0, r0 := session(s, 0)
	mustOK(t, "shared dir", d0.Write(0, "/shared", nil))
	mustOK(t, "shared perms", d0.SetPerms(0, "/shared", []Perm{{0, AccessNone}, {1, AccessBoth}}))
	mustOK(t, "watch", d0.Watch("/local/domain", "dom"))
	mustOK(t, "watch", d0.Watch(ReleaseDomainPath, "rel"))
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
	if string(FormatPerms(perms)) != "n0\x00b1\x00" {
		t.Fatalf("orphan perms %q", FormatPerms(perms))
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

func TestClientWatch(t *testing.T) {
	s := newStore(t, 1)
	c := s.Connect(1)
	w, err := c.Watch("data")
	mustOK(t, "watch", err)
	if p := next(t, w); p != "data" {
		t.Fatalf("initial event %q", p)
	}
	// A slow receiver gets coalesced events, never none.
	for i := 0; i < 100; i++ {
		mustOK(t, "write", c.Write("data/x", []byte(strconv.Itoa(i))))
	}
	if n := len(w.Events()); n < 1 || n > watchBuffer {
		t.Fatalf("%d events pending", n)
	}
	for len(w.Events()) > 0 {
		if p := next(t, w); p != "data/x" {
			t.Fatalf("event %q", p)
		}
	}
	mustOK(t, "write", c.Write("data/y", nil))
	if p := next(t, w); p != "data/y" {
		t.Fatalf("event %q", p)
	}
	mustOK(t, "close", w.Close())
	mustOK(t, "close twice", w.Close())
	wantClosed(t, w)
	mustOK(t, "write after close", c.Write("data/z", nil))

	// Two watches on one path are independent; closing the client closes them.
	w1, err := c.Watch("data")
	mustOK(t, "watch", err)
	w2, err := c.Watch("data")
	mustOK(t, "watch", err)
	next(t, w1)
	next(t, w2)
	_, err = c.Watch("bad/")
	wantErr(t, "bad watch", err, syscall.EINVAL)
	mustOK(t, "close client", c.Close())
	wantClosed(t, w1)
	wantClosed(t, w2)
	_, err = c.Watch("data")
	wantErr(t, "watch on closed client", err, syscall.ENOTCONN)
	_, err = c.Begin()
	wantErr(t, "begin on closed client", err, syscall.ENOTCONN)
	if p, err := c.DomainPath(3); p != "/local/domain/3" || err != nil {
		t.Fatalf("DomainPath = %q, %v", p, err)
	}
}

func TestClientOps(t *testing.T) {
	s := newStore(t, 1)
	c := s.Connect(1)
	defer c.Close()
	mustOK(t, "mkdir", c.Mkdir("data/d"))
	mustOK(t, "write", c.Write("data/d/f", []byte("v")))
	names, err := c.Directory("data/d")
	if err != nil || !reflect.DeepEqual(names, []string{"f"}) {
		t.Fatalf("directory = %q, %v", names, err)
	}
	mustOK(t, "set_perms", c.SetPerms("data/d/f", []Perm{{1, AccessRead}}))
	perms, err := c.GetPerms("data/d/f")
	if err != nil || string(FormatPerms(perms)) != "r1\x00" {
		t.Fatalf("get_perms = %v, %v", perms, err)
	}
	tx, err := c.Begin()
	mustOK(t, "begin", err)
	mustOK(t, "tx mkdir", tx.Mkdir("data/e"))
	mustOK(t, "tx rm", tx.Rm("data/d"))
	if _, err := tx.Directory("data"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.GetPerms("data/e"); err != nil {
		t.Fatal(err)
	}
	mustOK(t, "tx set_perms", tx.SetPerms("data/e", []Perm{{1, AccessRead}}))
	if v, err := tx.Read("data/e"); err != nil || len(v) != 0 {
		t.Fatalf("tx read = %q, %v", v, err)
	}
	mustOK(t, "tx write", tx.Write("data/e", []byte("x")))
	mustOK(t, "commit", tx.Commit())
	wantErr(t, "abort after commit", tx.Abort(), syscall.ENOENT)
	names, _ = c.Directory("data")
	if !reflect.DeepEqual(names, []string{"e"}) {
		t.Fatalf("directory after commit = %q", names)
	}
	mustOK(t, "rm", c.Rm("data/e"))
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
	s.Walk(func(p string, v []byte, perms []Perm) {
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
	s.Walk(func(p string, _ []byte, _ []Perm) {
		if _, err := d0.Read(0, p); err != nil {
			t.Errorf("read %s during Walk: %v", p, err)
		}
	})
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
	var xe *Error
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
		{d1.SetPerms(0, "/local", []Perm{{1, AccessNone}}), "set_perms"},
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
