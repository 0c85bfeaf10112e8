// Package xssim simulates the xenstore of a Xen host inside one process: a
// Store is an in-memory xenstore with C xenstored's permissions, optimistic
// transactions, watches and quotas (docs/PROTOCOL.md §13), so that vchan
// endpoints of several "domains" can find each other in tests without Xen.
//
// vchan.Simulator talks to a Store in-process, through the Client that
// Store.Connect returns (an implementation of xenstore.Client); the
// vchan-simd daemon serves one over the wire protocol with package
// xsserver, which drives a Session per connection. IntroduceDomain and
// ReleaseDomain stand in for the toolstack creating and destroying domains.
//
// Values are bytes that any domain may have written: the store keeps and
// returns them, never interprets them.
package xssim

import (
	"sync"

	"github.com/vchan-go/vchan/internal/xenstore"
)

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
	s.setNode("/", &node{perms: []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}}})
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

// Walk calls fn for every node, depth first with children in sorted order,
// like xenstore-ls, with copies of the value and permissions. fn runs
// without the store's lock held, on a consistent snapshot.
func (s *Store) Walk(fn func(path string, value []byte, perms []xenstore.Perm)) {
	type entry struct {
		path  string
		value []byte
		perms []xenstore.Perm
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
