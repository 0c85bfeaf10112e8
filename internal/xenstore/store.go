package xenstore

import (
	"errors"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// Limits are the per-domain quotas the store enforces on unprivileged
// domains (every domain but dom0), with C xenstored's defaults in
// DefaultLimits (docs/PROTOCOL.md §13.7). A limit of zero or less means no limit.
type Limits struct {
	Nodes        int // nodes owned per unprivileged domain (C xenstored: 1000)
	Watches      int // watches per unprivileged domain (128)
	Transactions int // open transactions per unprivileged connection (10)
	NodeSize     int // value bytes + perms size per node (2048); see NodeSize
	PermEntries  int // permission entries per node for unprivileged domains (5)
}

// DefaultLimits returns C xenstored's default quotas.
func DefaultLimits() Limits {
	return Limits{Nodes: 1000, Watches: 128, Transactions: 10, NodeSize: 2048, PermEntries: 5}
}

// permEntrySize is what one permission entry counts towards the node size
// quota: sizeof(struct xs_permissions) in C xenstored's node records.
const permEntrySize = 8

// NodeSize is the size a node with this value and these permissions counts
// against Limits.NodeSize: the value's length plus 8 bytes per permission
// entry, as C xenstored charges its permission records.
func NodeSize(value []byte, perms []Perm) int {
	return len(value) + permEntrySize*len(perms)
}

// over reports whether n exceeds limit; a limit ≤ 0 is no limit.
func over(limit, n int) bool { return limit > 0 && n > limit }

// node is one xenstore node. Nodes are immutable once stored: every change
// stores a new node, so transaction snapshots can share them and a changed
// node is detected by comparing pointers.
type node struct {
	value    []byte
	perms    []Perm   // never empty; perms[0] is the owner
	children []string // child names, sorted
}

func (n *node) owner() uint16 { return n.perms[0].Domain }

// withChild returns a copy of n with the child name added.
func (n *node) withChild(name string) *node {
	i := sort.SearchStrings(n.children, name)
	if i < len(n.children) && n.children[i] == name {
		return n
	}
	ch := make([]string, 0, len(n.children)+1)
	ch = append(ch, n.children[:i]...)
	ch = append(ch, name)
	ch = append(ch, n.children[i:]...)
	return &node{value: n.value, perms: n.perms, children: ch}
}

// withoutChild returns a copy of n with the child name removed.
func (n *node) withoutChild(name string) *node {
	i := sort.SearchStrings(n.children, name)
	if i == len(n.children) || n.children[i] != name {
		return n
	}
	ch := make([]string, 0, len(n.children)-1)
	ch = append(ch, n.children[:i]...)
	ch = append(ch, n.children[i+1:]...)
	return &node{value: n.value, perms: n.perms, children: ch}
}

func cloneBytes(b []byte) []byte { return append([]byte{}, b...) }

// Store is an in-memory xenstore with C xenstored's permissions, optimistic
// transactions, watches and quotas (docs/PROTOCOL.md §13). Domains talk to it
// through Sessions (the per-connection API a wire server needs) or through
// the Client returned by Connect. dom0 is the privileged domain: it bypasses
// permission checks and quotas. A Store is safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	limits Limits

	// nodes maps absolute paths to nodes. Open transactions may share the
	// map as their snapshot: snapRefs counts those sharing the current map,
	// which is then copied before it is changed (see cow).
	nodes    map[string]*node
	snapRefs int
	mapGen   uint64

	owned      map[uint16]int // nodes owned, per domain
	watchCount map[uint16]int // watches registered, per domain
	sessions   map[*Session]struct{}
	introduced map[uint16]bool
	nextTx     uint32
	root       *Session // privileged pseudo-session for the store's own changes

	// Work collected under mu and done by unlock once mu is released.
	pending []event
	closers []func()
}

// NewStore returns a store holding "/", "/local" and "/local/domain", owned
// by dom0 with permissions "n0".
func NewStore(l Limits) *Store {
	s := &Store{
		limits:     l,
		nodes:      make(map[string]*node),
		owned:      make(map[uint16]int),
		watchCount: make(map[uint16]int),
		sessions:   make(map[*Session]struct{}),
		introduced: make(map[uint16]bool),
	}
	s.root = &Session{s: s, domid: 0}
	s.setNode("/", &node{perms: []Perm{{0, AccessNone}}})
	s.create(s.root, view{s: s}, "/local/domain", nil)
	return s
}

// unlock releases mu, then delivers the collected watch events and runs the
// collected close callbacks, so that neither runs under the lock.
func (s *Store) unlock() {
	evs, closers := s.pending, s.closers
	s.pending, s.closers = nil, nil
	s.mu.Unlock()
	for _, e := range evs {
		if !e.sess.closed.Load() {
			e.sess.deliver(e.path, e.token)
		}
	}
	for _, f := range closers {
		f()
	}
}

// cow makes s.nodes private before it is changed, if a transaction shares it.
func (s *Store) cow() {
	if s.snapRefs == 0 {
		return
	}
	m := make(map[string]*node, len(s.nodes))
	for p, n := range s.nodes {
		m[p] = n
	}
	s.nodes = m
	s.mapGen++
	s.snapRefs = 0
}

// setNode stores n at p (nil removes it), keeping the ownership counts.
func (s *Store) setNode(p string, n *node) {
	old := s.nodes[p]
	if old == n {
		return
	}
	s.cow()
	if old != nil {
		s.addOwned(old.owner(), -1)
	}
	if n == nil {
		delete(s.nodes, p)
	} else {
		s.nodes[p] = n
		s.addOwned(n.owner(), 1)
	}
}

func (s *Store) addOwned(d uint16, k int) {
	if c := s.owned[d] + k; c == 0 {
		delete(s.owned, d)
	} else {
		s.owned[d] = c
	}
}

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

// change describes one changed node, for firing watches.
type change struct {
	path     string
	removed  map[string][]Perm // rm: the removed nodes' permissions, before removal
	oldPerms []Perm            // set_perms: the permissions before
}

// event is one watch event waiting to be delivered.
type event struct {
	sess        *Session
	path, token string
}

// watchReg is one registered watch.
type watchReg struct {
	abs      string // absolute path, or a special path
	token    string
	relative bool // registered with a relative path: report events relative
}

// appendEvents appends the watch events that ch causes, evaluated against
// the current store. seen, if not nil, suppresses duplicates.
func (s *Store) appendEvents(out []event, ch change, seen map[event]struct{}) []event {
	for sess := range s.sessions {
		for _, w := range sess.watches {
			if IsSpecialPath(w.abs) {
				continue
			}
			var p string
			ok := false
			switch {
			case isUnder(ch.path, w.abs):
				p = ch.path
				if ch.removed != nil {
					ok = sess.mayRead(ch.removed[ch.path])
				} else if n := s.nodes[ch.path]; n != nil {
					ok = sess.mayRead(n.perms) && (ch.oldPerms == nil || sess.mayRead(ch.oldPerms))
				}
			case ch.removed != nil && isUnder(w.abs, ch.path):
				// A watch below a removed node fires with its own path,
				// if the domain could read the deepest removed node at
				// or above it.
				p = w.abs
				q := w.abs
				for ch.removed[q] == nil {
					q = parentPath(q)
				}
				ok = sess.mayRead(ch.removed[q])
			}
			if !ok {
				continue
			}
			if w.relative {
				p = relativeTo(sess.domid, p)
			}
			e := event{sess: sess, path: p, token: w.token}
			if seen != nil {
				if _, dup := seen[e]; dup {
					continue
				}
				seen[e] = struct{}{}
			}
			out = append(out, e)
		}
	}
	return out
}

// fireSpecial queues an event for every watch on the special path p.
func (s *Store) fireSpecial(p string) {
	for sess := range s.sessions {
		for _, w := range sess.watches {
			if w.abs == p {
				s.pending = append(s.pending, event{sess: sess, path: p, token: w.token})
			}
		}
	}
}

// Session is one connection to the store, as one domain: the low-level API
// a wire-protocol server needs, with explicit transaction ids (0 = none).
// Paths may be relative to the domain's home, DomainPath(domid). All errors
// are *Error wrapping a syscall.Errno; after Close (or ReleaseDomain of the
// session's domain) every operation fails with ENOTCONN.
type Session struct {
	s       *Store
	domid   uint16
	deliver func(path, token string)
	onClose func()
	closed  atomic.Bool

	// Guarded by s.mu.
	txs     map[uint32]*txn
	watches []*watchReg
}

// NewSession opens a connection as domain domid; dom0 is privileged. deliver
// receives the watch events (the path, relative if the watch was registered
// relative, and the token). It is called without the store's lock held, so it
// may call back into the store, but possibly from several goroutines at once
// and in the goroutine of whichever operation caused the event: it must be
// quick and must not block. A nil deliver discards events.
func (s *Store) NewSession(domid uint16, deliver func(path, token string)) *Session {
	return s.newSession(domid, deliver, nil)
}

func (s *Store) newSession(domid uint16, deliver func(path, token string), onClose func()) *Session {
	if deliver == nil {
		deliver = func(string, string) {}
	}
	c := &Session{s: s, domid: domid, deliver: deliver, onClose: onClose, txs: make(map[uint32]*txn)}
	s.mu.Lock()
	s.sessions[c] = struct{}{}
	s.mu.Unlock()
	return c
}

// Domain returns the session's domain id.
func (c *Session) Domain() uint16 { return c.domid }

// DomainPath returns the home path of domain domid.
func (c *Session) DomainPath(domid uint16) string { return DomainPath(domid) }

func (c *Session) privileged() bool { return c.domid == 0 }

// mayRead reports whether the session's domain may read a node with perms.
func (c *Session) mayRead(perms []Perm) bool {
	return c.privileged() || accessFor(c.domid, perms).readable()
}

// mayWrite reports whether the session's domain may write a node with perms.
func (c *Session) mayWrite(perms []Perm) bool {
	return c.privileged() || accessFor(c.domid, perms).writable()
}

func opError(op, path string, errno syscall.Errno) error {
	return &Error{Op: op, Path: path, Err: errno}
}

// do runs one path operation under the store lock: it checks the session
// and the transaction id, resolves path, and runs f.
func (c *Session) do(op string, txid uint32, path string, f func(v view, abs string) syscall.Errno) error {
	s := c.s
	s.mu.Lock()
	defer s.unlock()
	if c.closed.Load() {
		return opError(op, path, syscall.ENOTCONN)
	}
	v := view{s: s}
	if txid != 0 {
		tx := c.txs[txid]
		if tx == nil {
			return opError(op, path, syscall.ENOENT)
		}
		v.tx = tx
	}
	abs, _, errno := resolve(c.domid, path, false)
	if errno == 0 {
		errno = f(v, abs)
	}
	if errno != 0 {
		return opError(op, path, errno)
	}
	return nil
}

// Read returns a copy of the value of a node. It needs read permission.
func (c *Session) Read(tx uint32, path string) ([]byte, error) {
	var val []byte
	err := c.do("read", tx, path, func(v view, abs string) syscall.Errno {
		n, errno := c.s.lookup(c, v, abs)
		if errno == 0 {
			val = cloneBytes(n.value)
		}
		return errno
	})
	return val, err
}

// Write sets the value of a node, creating it and any missing parents with
// empty values. It needs write permission on the node, or when creating, on
// its deepest existing ancestor.
func (c *Session) Write(tx uint32, path string, value []byte) error {
	return c.do("write", tx, path, func(v view, abs string) syscall.Errno {
		return c.s.write(c, v, abs, value)
	})
}

// Mkdir creates a node with an empty value, and any missing parents. An
// existing node is left alone (but still needs write permission).
func (c *Session) Mkdir(tx uint32, path string) error {
	return c.do("mkdir", tx, path, func(v view, abs string) syscall.Errno {
		return c.s.mkdir(c, v, abs)
	})
}

// Rm removes a node and everything below it. It needs write permission on
// the node. An absent node whose parent exists is not an error; an absent
// parent is ENOENT; the root cannot be removed (EINVAL).
func (c *Session) Rm(tx uint32, path string) error {
	return c.do("rm", tx, path, func(v view, abs string) syscall.Errno {
		return c.s.rm(c, v, abs)
	})
}

// Directory returns the sorted names of a node's children. It needs read
// permission.
func (c *Session) Directory(tx uint32, path string) ([]string, error) {
	var names []string
	err := c.do("directory", tx, path, func(v view, abs string) syscall.Errno {
		n, errno := c.s.lookup(c, v, abs)
		if errno == 0 {
			names = append([]string{}, n.children...)
		}
		return errno
	})
	return names, err
}

// GetPerms returns a copy of a node's permissions. It needs read permission.
func (c *Session) GetPerms(tx uint32, path string) ([]Perm, error) {
	var perms []Perm
	err := c.do("get_perms", tx, path, func(v view, abs string) syscall.Errno {
		n, errno := c.s.lookup(c, v, abs)
		if errno == 0 {
			perms = clonePerms(n.perms)
		}
		return errno
	})
	return perms, err
}

// SetPerms replaces a node's permissions. Only the owner (or dom0) may do
// it (EACCES otherwise), only dom0 may change the owner (EPERM), and perms
// must not be empty or hold an invalid access letter (EINVAL).
func (c *Session) SetPerms(tx uint32, path string, perms []Perm) error {
	return c.do("set_perms", tx, path, func(v view, abs string) syscall.Errno {
		return c.s.setPerms(c, v, abs, perms)
	})
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

// Watch registers a watch on path (which may be relative, or one of the
// special paths) with token. It fires once at once, with path as given, and
// then for every change to the node or below it that the domain may read,
// and when the node or an ancestor is removed. Duplicate (path, token) on
// one session is EEXIST; an unprivileged domain may hold at most
// Limits.Watches watches (E2BIG).
func (c *Session) Watch(path, token string) error {
	const op = "watch"
	s := c.s
	s.mu.Lock()
	defer s.unlock()
	if c.closed.Load() {
		return opError(op, path, syscall.ENOTCONN)
	}
	abs, rel, errno := resolve(c.domid, path, true)
	if errno != 0 {
		return opError(op, path, errno)
	}
	for _, w := range c.watches {
		if w.abs == abs && w.token == token {
			return opError(op, path, syscall.EEXIST)
		}
	}
	if !c.privileged() && over(s.limits.Watches, s.watchCount[c.domid]+1) {
		return opError(op, path, syscall.E2BIG)
	}
	c.watches = append(c.watches, &watchReg{abs: abs, token: token, relative: rel})
	s.watchCount[c.domid]++
	s.pending = append(s.pending, event{sess: c, path: path, token: token})
	return nil
}

// Unwatch removes the watch registered with path and token (ENOENT if there
// is none).
func (c *Session) Unwatch(path, token string) error {
	const op = "unwatch"
	s := c.s
	s.mu.Lock()
	defer s.unlock()
	if c.closed.Load() {
		return opError(op, path, syscall.ENOTCONN)
	}
	abs, _, errno := resolve(c.domid, path, true)
	if errno != 0 {
		return opError(op, path, errno)
	}
	for i, w := range c.watches {
		if w.abs == abs && w.token == token {
			c.watches = append(c.watches[:i], c.watches[i+1:]...)
			s.decWatches(c.domid, 1)
			return nil
		}
	}
	return opError(op, path, syscall.ENOENT)
}

func (s *Store) decWatches(d uint16, k int) {
	if c := s.watchCount[d] - k; c <= 0 {
		delete(s.watchCount, d)
	} else {
		s.watchCount[d] = c
	}
}

// Close ends the session: it aborts its transactions, removes its watches
// and releases their quota. Closing twice is harmless.
func (c *Session) Close() {
	c.s.mu.Lock()
	defer c.s.unlock()
	c.s.closeSession(c)
}

func (s *Store) closeSession(c *Session) {
	if c.closed.Load() {
		return
	}
	c.closed.Store(true)
	for _, t := range c.txs {
		s.releaseSnapshot(t)
	}
	c.txs = nil
	s.decWatches(c.domid, len(c.watches))
	c.watches = nil
	delete(s.sessions, c)
	if c.onClose != nil {
		s.closers = append(s.closers, c.onClose)
	}
}

// missing returns the error for the absent node p: ENOENT if the domain may
// read the deepest existing ancestor, EACCES otherwise, so that existence is
// not leaked (C xenstored's errno_from_parents).
func (s *Store) missing(c *Session, v view, p string) syscall.Errno {
	for p != "/" {
		p = parentPath(p)
		if n := v.get(p); n != nil {
			if c.mayRead(n.perms) {
				return syscall.ENOENT
			}
			return syscall.EACCES
		}
	}
	return syscall.ENOENT
}

// lookup returns the node at p if it exists and the domain may read it.
func (s *Store) lookup(c *Session, v view, p string) (*node, syscall.Errno) {
	n := v.get(p)
	if n == nil {
		return nil, s.missing(c, v, p)
	}
	if !c.mayRead(n.perms) {
		return nil, syscall.EACCES
	}
	return n, 0
}

// create makes the absent node p with value, and its missing parents with
// empty values. The new nodes inherit the permissions of the deepest
// existing ancestor, on which the domain needs write permission; an
// unprivileged creator becomes their owner. It records no change.
func (s *Store) create(c *Session, v view, p string, value []byte) syscall.Errno {
	newPaths := []string{p} // p, then its missing parents upwards
	anc := parentPath(p)
	var an *node
	for {
		if an = v.get(anc); an != nil {
			break
		}
		newPaths = append(newPaths, anc)
		anc = parentPath(anc)
	}
	if !c.mayWrite(an.perms) {
		return syscall.EACCES
	}
	perms := clonePerms(an.perms)
	if !c.privileged() {
		perms[0].Domain = c.domid
		if over(s.limits.Nodes, v.owned(c.domid)+len(newPaths)) {
			return syscall.ENOSPC
		}
		if over(s.limits.NodeSize, NodeSize(value, perms)) {
			return syscall.ENOSPC
		}
	}
	top := len(newPaths) - 1
	v.set(anc, an.withChild(baseName(newPaths[top])))
	for i := top; i >= 0; i-- {
		n := &node{perms: perms}
		if i == 0 {
			n.value = cloneBytes(value)
		} else {
			n.children = []string{baseName(newPaths[i-1])}
		}
		v.set(newPaths[i], n)
	}
	return 0
}

func (s *Store) write(c *Session, v view, p string, value []byte) syscall.Errno {
	n := v.get(p)
	if n == nil {
		if errno := s.create(c, v, p, value); errno != 0 {
			return errno
		}
	} else {
		if !c.mayWrite(n.perms) {
			return syscall.EACCES
		}
		if !c.privileged() && over(s.limits.NodeSize, NodeSize(value, n.perms)) {
			return syscall.ENOSPC
		}
		v.set(p, &node{value: cloneBytes(value), perms: n.perms, children: n.children})
	}
	v.record(change{path: p})
	return 0
}

func (s *Store) mkdir(c *Session, v view, p string) syscall.Errno {
	if n := v.get(p); n != nil {
		if !c.mayWrite(n.perms) {
			return syscall.EACCES
		}
		return 0
	}
	if errno := s.create(c, v, p, nil); errno != 0 {
		return errno
	}
	v.record(change{path: p})
	return 0
}

func (s *Store) rm(c *Session, v view, p string) syscall.Errno {
	if p == "/" {
		return syscall.EINVAL
	}
	n := v.get(p)
	if n == nil {
		errno := s.missing(c, v, p)
		if errno == syscall.ENOENT && v.get(parentPath(p)) != nil {
			return 0
		}
		return errno
	}
	if !c.mayWrite(n.perms) {
		return syscall.EACCES
	}
	removed := make(map[string][]Perm)
	var walk func(q string, n *node)
	walk = func(q string, n *node) {
		removed[q] = n.perms
		for _, name := range n.children {
			cp := joinPath(q, name)
			if cn := v.get(cp); cn != nil {
				walk(cp, cn)
			}
		}
		v.set(q, nil)
	}
	walk(p, n)
	pp := parentPath(p)
	v.set(pp, v.get(pp).withoutChild(baseName(p)))
	v.record(change{path: p, removed: removed})
	return 0
}

func (s *Store) setPerms(c *Session, v view, p string, perms []Perm) syscall.Errno {
	if len(perms) == 0 {
		return syscall.EINVAL
	}
	for _, pe := range perms {
		if !pe.Access.valid() {
			return syscall.EINVAL
		}
	}
	if !c.privileged() && over(s.limits.PermEntries, len(perms)) {
		return syscall.ENOSPC
	}
	n := v.get(p)
	if n == nil {
		return s.missing(c, v, p)
	}
	if !c.privileged() {
		if n.owner() != c.domid {
			return syscall.EACCES
		}
		if perms[0].Domain != n.owner() {
			return syscall.EPERM
		}
		if over(s.limits.NodeSize, NodeSize(n.value, perms)) {
			return syscall.ENOSPC
		}
	}
	v.set(p, &node{value: n.value, perms: clonePerms(perms), children: n.children})
	v.record(change{path: p, oldPerms: n.perms})
	return 0
}

// IntroduceDomain makes domain domid known: it creates its home,
// /local/domain/<domid>, owned by the domain (permissions "n<domid>"), and
// <home>/domid holding the decimal id, owned by dom0 and readable by the
// domain ("n0 r<domid>"), then fires the @introduceDomain watches.
// Introducing a domain twice is EEXIST.
func (s *Store) IntroduceDomain(domid uint16) error {
	s.mu.Lock()
	defer s.unlock()
	if s.introduced[domid] {
		return opError("introduce", "", syscall.EEXIST)
	}
	s.introduced[domid] = true
	v := view{s: s}
	home := DomainPath(domid)
	n := v.get(home)
	if n == nil {
		s.create(s.root, v, home, nil)
		n = v.get(home)
	}
	v.set(home, &node{value: n.value, perms: []Perm{{domid, AccessNone}}, children: n.children})
	v.record(change{path: home})

	idPath := home + "/domid"
	idPerms := []Perm{{0, AccessNone}}
	if domid != 0 {
		idPerms = append(idPerms, Perm{domid, AccessRead})
	}
	if n := v.get(idPath); n == nil {
		s.create(s.root, v, idPath, nil)
	}
	n = v.get(idPath)
	v.set(idPath, &node{value: []byte(strconv.FormatUint(uint64(domid), 10)), perms: idPerms, children: n.children})
	v.record(change{path: idPath})

	s.fireSpecial(IntroduceDomainPath)
	return nil
}

// ReleaseDomain forgets domain domid: it closes the domain's sessions,
// removes its home (firing watches as an rm does), gives any other node the
// domain still owns to dom0, frees its quota and fires the @releaseDomain
// watches. Releasing a domain that was not introduced is ENOENT; dom0 cannot
// be released (EINVAL).
func (s *Store) ReleaseDomain(domid uint16) error {
	s.mu.Lock()
	defer s.unlock()
	if domid == 0 {
		return opError("release", "", syscall.EINVAL)
	}
	if !s.introduced[domid] {
		return opError("release", "", syscall.ENOENT)
	}
	delete(s.introduced, domid)
	for c := range s.sessions {
		if c.domid == domid {
			s.closeSession(c)
		}
	}
	v := view{s: s}
	home := DomainPath(domid)
	if v.get(home) != nil {
		s.rm(s.root, v, home)
	}
	var chown []string
	for p, n := range s.nodes {
		if n.owner() == domid {
			chown = append(chown, p)
		}
	}
	for _, p := range chown {
		n := s.nodes[p]
		perms := clonePerms(n.perms)
		perms[0].Domain = 0
		s.setNode(p, &node{value: n.value, perms: perms, children: n.children})
	}
	delete(s.owned, domid)
	delete(s.watchCount, domid)
	s.fireSpecial(ReleaseDomainPath)
	return nil
}

// Walk calls fn for every node, depth first with children in sorted order,
// like xenstore-ls, with copies of the value and permissions. fn runs
// without the store's lock held, on a consistent snapshot.
func (s *Store) Walk(fn func(path string, value []byte, perms []Perm)) {
	type entry struct {
		path  string
		value []byte
		perms []Perm
	}
	var all []entry
	s.mu.Lock()
	var walk func(p string)
	walk = func(p string) {
		n := s.nodes[p]
		if n == nil {
			return
		}
		all = append(all, entry{p, cloneBytes(n.value), clonePerms(n.perms)})
		for _, name := range n.children {
			walk(joinPath(p, name))
		}
	}
	walk("/")
	s.unlock()
	for _, e := range all {
		fn(e.path, e.value, e.perms)
	}
}

// Len returns the number of nodes in the store.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.unlock()
	return len(s.nodes)
}

// Connect returns an in-process Client for domain domid over a new Session.
// Its watches deliver events on a channel buffered for 16 events, fed with
// non-blocking sends: when the buffer is full the event is dropped, since
// the receiver already has events pending (the coalescing rule of the Watch
// interface). The channels are closed when the watch, the client, or its
// session (by ReleaseDomain) is closed.
func (s *Store) Connect(domid uint16) Client {
	c := &client{watches: make(map[string]*clientWatch)}
	c.sess = s.newSession(domid, c.dispatch, c.shutdown)
	return c
}

// watchBuffer is the capacity of a Client watch's event channel.
const watchBuffer = 16

// client is the Client returned by Store.Connect.
type client struct {
	sess    *Session
	mu      sync.Mutex
	watches map[string]*clientWatch // by token
	next    uint64
}

func (c *client) Read(path string) ([]byte, error)        { return c.sess.Read(0, path) }
func (c *client) Write(path string, value []byte) error   { return c.sess.Write(0, path, value) }
func (c *client) Mkdir(path string) error                 { return c.sess.Mkdir(0, path) }
func (c *client) Rm(path string) error                    { return c.sess.Rm(0, path) }
func (c *client) Directory(path string) ([]string, error) { return c.sess.Directory(0, path) }
func (c *client) GetPerms(path string) ([]Perm, error)    { return c.sess.GetPerms(0, path) }
func (c *client) SetPerms(path string, perms []Perm) error {
	return c.sess.SetPerms(0, path, perms)
}

func (c *client) DomainPath(domid uint16) (string, error) { return DomainPath(domid), nil }

func (c *client) Begin() (Tx, error) {
	id, err := c.sess.TransactionStart()
	if err != nil {
		return nil, err
	}
	return &clientTx{sess: c.sess, id: id}, nil
}

func (c *client) Watch(path string) (Watch, error) {
	w := &clientWatch{c: c, path: path, ch: make(chan string, watchBuffer)}
	c.mu.Lock()
	c.next++
	w.token = "vchan-go-" + strconv.FormatUint(c.next, 10)
	c.watches[w.token] = w
	c.mu.Unlock()
	// Registered first: the watch fires during sess.Watch.
	if err := c.sess.Watch(path, w.token); err != nil {
		c.mu.Lock()
		delete(c.watches, w.token)
		c.mu.Unlock()
		w.shut()
		return nil, err
	}
	return w, nil
}

func (c *client) Close() error {
	c.sess.Close()
	return nil
}

// dispatch is the session's deliver function.
func (c *client) dispatch(path, token string) {
	c.mu.Lock()
	w := c.watches[token]
	c.mu.Unlock()
	if w != nil {
		w.send(path)
	}
}

// shutdown runs when the session closes: it closes every watch channel.
func (c *client) shutdown() {
	c.mu.Lock()
	ws := c.watches
	c.watches = make(map[string]*clientWatch)
	c.mu.Unlock()
	for _, w := range ws {
		w.shut()
	}
}

// clientTx is the Tx returned by client.Begin.
type clientTx struct {
	sess *Session
	id   uint32
}

func (t *clientTx) Read(path string) ([]byte, error)      { return t.sess.Read(t.id, path) }
func (t *clientTx) Write(path string, value []byte) error { return t.sess.Write(t.id, path, value) }
func (t *clientTx) Mkdir(path string) error               { return t.sess.Mkdir(t.id, path) }
func (t *clientTx) Rm(path string) error                  { return t.sess.Rm(t.id, path) }
func (t *clientTx) Directory(path string) ([]string, error) {
	return t.sess.Directory(t.id, path)
}
func (t *clientTx) GetPerms(path string) ([]Perm, error) { return t.sess.GetPerms(t.id, path) }
func (t *clientTx) SetPerms(path string, perms []Perm) error {
	return t.sess.SetPerms(t.id, path, perms)
}
func (t *clientTx) Commit() error { return t.sess.TransactionEnd(t.id, true) }
func (t *clientTx) Abort() error  { return t.sess.TransactionEnd(t.id, false) }

// clientWatch is the Watch returned by client.Watch.
type clientWatch struct {
	c           *client
	path, token string
	ch          chan string

	mu     sync.Mutex
	closed bool
}

func (w *clientWatch) Events() <-chan string { return w.ch }

// send queues an event unless the buffer is full or the watch is closed.
func (w *clientWatch) send(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	select {
	case w.ch <- path:
	default: // the receiver has events pending already
	}
}

// shut closes the event channel once.
func (w *clientWatch) shut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
}

func (w *clientWatch) Close() error {
	c := w.c
	c.mu.Lock()
	_, registered := c.watches[w.token]
	delete(c.watches, w.token)
	c.mu.Unlock()
	defer w.shut()
	if !registered {
		return nil // already closed, or the session is gone
	}
	err := c.sess.Unwatch(w.path, w.token)
	if errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	return err
}

var (
	_ Client = (*client)(nil)
	_ Tx     = (*clientTx)(nil)
	_ Watch  = (*clientWatch)(nil)
)
