package xssim

import (
	"sync/atomic"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// Session is one connection to the store, as one domain: the low-level API
// a wire-protocol server needs, with explicit transaction ids (0 = none).
// Paths may be relative to the domain's home, xenstore.DomainPath(domid).
// All errors are *xenstore.Error wrapping a syscall.Errno; after Close (or
// ReleaseDomain of the session's domain) every operation fails with
// ENOTCONN.
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
func (c *Session) DomainPath(domid uint16) string { return xenstore.DomainPath(domid) }

func opError(op, path string, errno syscall.Errno) error {
	return &xenstore.Error{Op: op, Path: path, Err: errno}
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
	abs, err := xenstore.ResolvePath(c.domid, path)
	if err != nil {
		return opError(op, path, syscall.EINVAL)
	}
	if errno := f(v, abs); errno != 0 {
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
func (c *Session) GetPerms(tx uint32, path string) ([]xenstore.Perm, error) {
	var perms []xenstore.Perm
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
func (c *Session) SetPerms(tx uint32, path string, perms []xenstore.Perm) error {
	return c.do("set_perms", tx, path, func(v view, abs string) syscall.Errno {
		return c.s.setPerms(c, v, abs, perms)
	})
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
