package xsclient

import (
	"fmt"
	"strconv"
	"sync"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// Begin starts a transaction.
// On the xenbus device it first waits until fewer than DeviceTransactions
// of this Client's transactions are open.
func (c *Client) Begin() (xenstore.Tx, error) {
	if c.txSlots == nil {
		return c.begin()
	}
	select {
	case c.txSlots <- struct{}{}:
	case <-c.readerDone:
		return nil, opErr("transaction_start", "", c.lostErr())
	}
	t, err := c.begin()
	if err != nil {
		c.releaseTx()
	}
	return t, err
}

// begin sends TRANSACTION_START and reads the new transaction's id.
func (c *Client) begin() (xenstore.Tx, error) {
	r, err := c.request(xswire.TransactionStart, 0, "", []byte{0})
	if err != nil {
		return nil, err
	}
	ss, err := xswire.ExactStrings(r, 1)
	var id uint64
	if err == nil {
		id, err = strconv.ParseUint(ss[0], 10, 32)
	}
	if err != nil || id == 0 {
		return nil, opErr("transaction_start", "", fmt.Errorf("%w: malformed transaction id %q", syscall.EBADMSG, r))
	}
	return &tx{c: c, id: uint32(id)}, nil
}

// releaseTx frees the slot of a transaction that ended or never started.
func (c *Client) releaseTx() {
	if c.txSlots != nil {
		<-c.txSlots
	}
}

// tx is an open transaction, identified by the tx_id of its requests.
type tx struct {
	c    *Client
	id   uint32
	mu   sync.Mutex
	done bool
}

func (t *tx) check(op, path string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return opErr(op, path, fmt.Errorf("%w: transaction already ended", syscall.EINVAL))
	}
	return nil
}

// Read returns the value of a node as the transaction sees it.
func (t *tx) Read(path string) ([]byte, error) {
	if err := t.check("read", path); err != nil {
		return nil, err
	}
	return t.c.read(t.id, path)
}

// Write sets the value of a node within the transaction.
func (t *tx) Write(path string, value []byte) error {
	if err := t.check("write", path); err != nil {
		return err
	}
	return t.c.write(t.id, path, value)
}

// Mkdir creates a node within the transaction.
func (t *tx) Mkdir(path string) error {
	if err := t.check("mkdir", path); err != nil {
		return err
	}
	return t.c.simple(xswire.Mkdir, t.id, path)
}

// Rm removes a node and everything below it within the transaction.
func (t *tx) Rm(path string) error {
	if err := t.check("rm", path); err != nil {
		return err
	}
	return t.c.simple(xswire.Rm, t.id, path)
}

// Directory lists a node's children as the transaction sees them.
func (t *tx) Directory(path string) ([]string, error) {
	if err := t.check("directory", path); err != nil {
		return nil, err
	}
	return t.c.directory(t.id, path)
}

// GetPerms returns a node's permissions as the transaction sees them.
func (t *tx) GetPerms(path string) ([]xenstore.Perm, error) {
	if err := t.check("get_perms", path); err != nil {
		return nil, err
	}
	return t.c.getPerms(t.id, path)
}

// SetPerms replaces a node's permissions within the transaction.
func (t *tx) SetPerms(path string, perms []xenstore.Perm) error {
	if err := t.check("set_perms", path); err != nil {
		return err
	}
	return t.c.setPerms(t.id, path, perms)
}

// Commit ends the transaction, applying its writes; a conflict fails with
// an error wrapping syscall.EAGAIN.
func (t *tx) Commit() error { return t.end("T") }

// Abort ends the transaction, discarding its writes.
func (t *tx) Abort() error { return t.end("F") }

func (t *tx) end(arg string) error {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return opErr("transaction_end", "", fmt.Errorf("%w: transaction already ended", syscall.EINVAL))
	}
	t.done = true
	t.mu.Unlock()
	// The slot is freed whatever xenstored answers: a failed END leaves
	// nothing this Client can end later.
	defer t.c.releaseTx()
	_, err := t.c.request(xswire.TransactionEnd, t.id, "", append([]byte(arg), 0))
	return err
}
