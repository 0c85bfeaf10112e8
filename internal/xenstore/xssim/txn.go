package xssim

import "syscall"

// txn is an open transaction: a snapshot of the store, its own changes on
// top, and everything it looked at.
type txn struct {
	id       uint32
	base     map[string]*node // the snapshot; never changed
	baseGen  uint64
	released bool
	overlay  map[string]*node    // the transaction's changes; nil = removed
	touched  map[string]struct{} // paths read or written
	changes  []change            // for the watch events at commit
	delta    map[uint16]int      // change in nodes owned, per domain
}

// releaseSnapshot drops tx's reference to the store's map.
func (s *Store) releaseSnapshot(tx *txn) {
	if tx.released {
		return
	}
	tx.released = true
	if tx.baseGen == s.mapGen && s.snapRefs > 0 {
		s.snapRefs--
	}
}

// view is what an operation works on: the store itself, or a transaction.
type view struct {
	s  *Store
	tx *txn
}

// get returns the node at p, or nil, recording p as touched.
func (v view) get(p string) *node {
	if v.tx == nil {
		return v.s.nodes[p]
	}
	v.tx.touched[p] = struct{}{}
	if n, ok := v.tx.overlay[p]; ok {
		return n
	}
	return v.tx.base[p]
}

// set stores n at p; nil removes the node.
func (v view) set(p string, n *node) {
	if v.tx == nil {
		v.s.setNode(p, n)
		return
	}
	old := v.get(p)
	if old != nil {
		v.tx.delta[old.owner()]--
	}
	if n != nil {
		v.tx.delta[n.owner()]++
	}
	v.tx.overlay[p] = n
}

// owned returns how many nodes domain d owns, as far as this view knows.
func (v view) owned(d uint16) int {
	c := v.s.owned[d]
	if v.tx != nil {
		c += v.tx.delta[d]
	}
	return c
}

// record notes a change for the watches: at once outside a transaction, at
// commit inside one.
func (v view) record(ch change) {
	if v.tx != nil {
		v.tx.changes = append(v.tx.changes, ch)
		return
	}
	v.s.pending = v.s.appendEvents(v.s.pending, ch, nil)
}

// TransactionStart opens a transaction and returns its id. An unprivileged
// session may hold at most Limits.Transactions open transactions (ENOSPC).
func (c *Session) TransactionStart() (uint32, error) {
	const op = "transaction_start"
	s := c.s
	s.mu.Lock()
	defer s.unlock()
	if c.closed.Load() {
		return 0, opError(op, "", syscall.ENOTCONN)
	}
	if !c.privileged() && over(s.limits.Transactions, len(c.txs)+1) {
		return 0, opError(op, "", syscall.ENOSPC)
	}
	for {
		s.nextTx++
		if s.nextTx != 0 && c.txs[s.nextTx] == nil {
			break
		}
	}
	tx := &txn{
		id:      s.nextTx,
		base:    s.nodes,
		baseGen: s.mapGen,
		overlay: make(map[string]*node),
		touched: make(map[string]struct{}),
		delta:   make(map[uint16]int),
	}
	s.snapRefs++
	c.txs[tx.id] = tx
	return tx.id, nil
}

// TransactionEnd ends a transaction, committing it if commit is true and
// discarding it otherwise. The transaction ends either way. A commit fails
// with EAGAIN, applying nothing, if anything the transaction read, listed or
// wrote was changed by someone else since it started; watches fire for its
// changes only when it commits. An unknown id is ENOENT.
func (c *Session) TransactionEnd(tx uint32, commit bool) error {
	const op = "transaction_end"
	s := c.s
	s.mu.Lock()
	defer s.unlock()
	if c.closed.Load() {
		return opError(op, "", syscall.ENOTCONN)
	}
	t := c.txs[tx]
	if t == nil {
		return opError(op, "", syscall.ENOENT)
	}
	delete(c.txs, tx)
	defer s.releaseSnapshot(t)
	if !commit {
		return nil
	}
	if errno := s.commit(c, t); errno != 0 {
		return opError(op, "", errno)
	}
	return nil
}

// commit applies t to the store, or fails with EAGAIN or ENOSPC.
func (s *Store) commit(c *Session, t *txn) syscall.Errno {
	for p := range t.touched {
		if s.nodes[p] != t.base[p] {
			return syscall.EAGAIN
		}
	}
	if !c.privileged() {
		if d := t.delta[c.domid]; d > 0 && over(s.limits.Nodes, s.owned[c.domid]+d) {
			return syscall.ENOSPC
		}
	}
	s.releaseSnapshot(t) // the store may now change its map in place
	for p, n := range t.overlay {
		s.setNode(p, n)
	}
	seen := make(map[event]struct{})
	for _, ch := range t.changes {
		s.pending = s.appendEvents(s.pending, ch, seen)
	}
	return 0
}
