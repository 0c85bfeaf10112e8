package xssim

import (
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// change describes one changed node, for firing watches.
type change struct {
	path     string
	removed  map[string][]xenstore.Perm // rm: the removed nodes' permissions, before removal
	oldPerms []xenstore.Perm            // set_perms: the permissions before
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
			if xenstore.IsSpecialPath(w.abs) {
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
	abs, rel, err := xenstore.ResolveWatchPath(c.domid, path)
	if err != nil {
		return opError(op, path, syscall.EINVAL)
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
	abs, _, err := xenstore.ResolveWatchPath(c.domid, path)
	if err != nil {
		return opError(op, path, syscall.EINVAL)
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
