package xssim

import (
	"errors"
	"strconv"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

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
	mustOK(t, "dom0 chown", d0.SetPerms(0, "/local/domain/1/data/y", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}})) // 5
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
	mustOK(t, "perms", d0.SetPerms(0, "/local/domain/1/x", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}}))
	mustOK(t, "perms", d0.SetPerms(0, "/local/domain/1/y", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 1, Access: xenstore.AccessBoth}}))
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
	wantErr(t, "perms grow the node", d1.SetPerms(0, "data/a", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessNone}, {Domain: 0, Access: xenstore.AccessRead}}), syscall.ENOSPC)
	mustOK(t, "dom0 unlimited", d0.Write(0, "/local/domain/1/data/a", make([]byte, 4000)))
	if NodeSize(make([]byte, 10), make([]xenstore.Perm, 3)) != 34 {
		t.Fatal("NodeSize")
	}
}

func TestPermEntriesQuota(t *testing.T) {
	s := newStore(t, 1)
	d1, _ := session(s, 1)
	d0, _ := session(s, 0)
	mustOK(t, "write", d1.Write(0, "data/a", nil))
	five := []xenstore.Perm{{Domain: 1, Access: xenstore.AccessNone}, {Domain: 2, Access: xenstore.AccessRead}, {Domain: 3, Access: xenstore.AccessRead}, {Domain: 4, Access: xenstore.AccessRead}, {Domain: 5, Access: xenstore.AccessRead}}
	mustOK(t, "5 entries", d1.SetPerms(0, "data/a", five))
	six := append(append([]xenstore.Perm{}, five...), xenstore.Perm{Domain: 6, Access: xenstore.AccessRead})
	wantErr(t, "6 entries", d1.SetPerms(0, "data/a", six), syscall.ENOSPC)
	mustOK(t, "dom0 6 entries", d0.SetPerms(0, "/local/domain/1/data/a", six))
	many := make([]xenstore.Perm, 100)
	for i := range many {
		many[i] = xenstore.Perm{Domain: uint16(i), Access: xenstore.AccessRead}
	}
	mustOK(t, "dom0 write", d0.Write(0, "/x", nil))
	mustOK(t, "dom0 100 entries", d0.SetPerms(0, "/x", many))
}
