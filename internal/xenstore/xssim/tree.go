package xssim

import (
	"sort"
	"strings"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// node is one xenstore node. Nodes are immutable once stored: every change
// stores a new node, so transaction snapshots can share them and a changed
// node is detected by comparing pointers.
type node struct {
	value    []byte
	perms    []xenstore.Perm // never empty; perms[0] is the owner
	children []string        // child names, sorted
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

// isUnder reports whether the absolute path p is anc or below it.
func isUnder(p, anc string) bool {
	if anc == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == anc || (strings.HasPrefix(p, anc) && len(p) > len(anc) && p[len(anc)] == '/')
}

// parentPath returns the parent of the absolute path p, which must not be
// the root.
func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// baseName returns the last element of the absolute path p.
func baseName(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// joinPath returns the path of the child name of dir.
func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// relativeTo returns p relative to the home of domid if it lies strictly
// below it, and p unchanged otherwise.
func relativeTo(domid uint16, p string) string {
	home := xenstore.DomainPath(domid)
	if strings.HasPrefix(p, home) && len(p) > len(home)+1 && p[len(home)] == '/' {
		return p[len(home)+1:]
	}
	return p
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
	removed := make(map[string][]xenstore.Perm)
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
