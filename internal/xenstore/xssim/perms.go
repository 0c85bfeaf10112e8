package xssim

import (
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// privileged reports whether the session is dom0's, which bypasses
// permission checks and quotas.
func (c *Session) privileged() bool { return c.domid == 0 }

// mayRead reports whether the session's domain may read a node with perms.
func (c *Session) mayRead(perms []xenstore.Perm) bool {
	return c.privileged() || readable(accessFor(c.domid, perms))
}

// mayWrite reports whether the session's domain may write a node with perms.
func (c *Session) mayWrite(perms []xenstore.Perm) bool {
	return c.privileged() || writable(accessFor(c.domid, perms))
}

// accessFor returns the access domain domid has to a node with perms, C
// xenstored's perm_for_conn for an unprivileged connection: the owner gets
// full access; otherwise the first entry naming the domain decides; otherwise
// the owner entry's letter is the default. Privilege is checked by the caller.
func accessFor(domid uint16, perms []xenstore.Perm) xenstore.Access {
	if len(perms) == 0 {
		return xenstore.AccessNone
	}
	if perms[0].Domain == domid {
		return xenstore.AccessBoth
	}
	for _, p := range perms[1:] {
		if p.Domain == domid {
			return p.Access
		}
	}
	return perms[0].Access
}

// readable reports whether a grants read access.
func readable(a xenstore.Access) bool { return a == xenstore.AccessRead || a == xenstore.AccessBoth }

// writable reports whether a grants write access.
func writable(a xenstore.Access) bool { return a == xenstore.AccessWrite || a == xenstore.AccessBoth }

// clonePerms returns a copy of perms.
func clonePerms(perms []xenstore.Perm) []xenstore.Perm {
	if perms == nil {
		return nil
	}
	return append([]xenstore.Perm(nil), perms...)
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

func (s *Store) setPerms(c *Session, v view, p string, perms []xenstore.Perm) syscall.Errno {
	if len(perms) == 0 {
		return syscall.EINVAL
	}
	for _, pe := range perms {
		if !pe.Access.Valid() {
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
