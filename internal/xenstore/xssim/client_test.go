package xssim

import (
	"fmt"
	"reflect"
	"strconv"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

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

	perms := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessRead}}
	err = xenstore.Update(server, func(tx xenstore.Ops) error {
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
	if string(xenstore.FormatPerms(got)) != "n0\x00r1\x00" {
		t.Fatalf("perms %q", xenstore.FormatPerms(got))
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
	wantErr(t, "client set_perms", client.SetPerms(base+"/ring-ref", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessBoth}}), syscall.EACCES)
	_, err = client.Directory(base)
	wantErr(t, "client directory", err, syscall.EACCES) // "might not have access to the whole directory"
	_, err = other.Read(base + "/ring-ref")
	wantErr(t, "dom2 read", err, syscall.EACCES)
	_, err = other.Read(base + "/event-channel")
	wantErr(t, "dom2 read", err, syscall.EACCES)
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
	mustOK(t, "set_perms", c.SetPerms("data/d/f", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessRead}}))
	perms, err := c.GetPerms("data/d/f")
	if err != nil || string(xenstore.FormatPerms(perms)) != "r1\x00" {
		t.Fatalf("get_perms = %v, %v", perms, err)
	}
	xtx, err := c.Begin()
	mustOK(t, "begin", err)
	tx := xtx.(*clientTx) // Mkdir, Directory and GetPerms are beyond xenstore.Tx
	mustOK(t, "tx mkdir", tx.Mkdir("data/e"))
	mustOK(t, "tx rm", tx.Rm("data/d"))
	if _, err := tx.Directory("data"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.GetPerms("data/e"); err != nil {
		t.Fatal(err)
	}
	mustOK(t, "tx set_perms", tx.SetPerms("data/e", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessRead}}))
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
