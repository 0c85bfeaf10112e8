package xssim

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

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
	var xe *xenstore.Error
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
		{"write, other sets perms", write("/t/a"), func(c *Session) error {
			return c.SetPerms(0, "/t/a", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}})
		}, syscall.EAGAIN},
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
	s.Walk(func(p string, v []byte, perms []xenstore.Perm) {
		before = append(before, fmt.Sprintf("%s=%q %v", p, v, perms))
	})
	tx, err := c.TransactionStart()
	mustOK(t, "start", err)
	mustOK(t, "tx write", c.Write(tx, "/t/a", []byte("1")))
	mustOK(t, "tx write", c.Write(tx, "/t/b/c", []byte("1")))
	mustOK(t, "tx set_perms", c.SetPerms(tx, "/t", []xenstore.Perm{{Domain: 1, Access: xenstore.AccessNone}}))
	mustOK(t, "tx rm", c.Rm(tx, "/local"))
	mustOK(t, "abort", c.TransactionEnd(tx, false))
	var after []string
	s.Walk(func(p string, v []byte, perms []xenstore.Perm) {
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
	err := xenstore.Update(c, func(tx xenstore.Ops) error {
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
	err = xenstore.Update(c, func(tx xenstore.Ops) error {
		attempts++
		if _, err := tx.Read("/counter"); err != nil {
			return err
		}
		return o.Write("/counter", []byte("x"))
	})
	if !errors.Is(err, syscall.EAGAIN) || attempts != xenstore.MaxUpdateAttempts {
		t.Fatalf("Update = %v after %d attempts", err, attempts)
	}
	// An error from fn aborts.
	sentinel := errors.New("stop")
	err = xenstore.Update(c, func(tx xenstore.Ops) error {
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
					err := xenstore.Update(c, func(tx xenstore.Ops) error {
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
