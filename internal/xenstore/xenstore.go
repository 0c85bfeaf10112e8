// Package xenstore defines how the vchan engine uses xenstore
// (docs/PROTOCOL.md §13): the Client, Tx and Watch interfaces, trimmed to the
// operations the engine calls, Update, which runs a transaction until it
// commits, the Error that operations return, and helpers for xenstore paths
// (ValidPath, ResolvePath, DomainPath) and permissions (Perm, ParsePerms,
// FormatPerms).
//
// The engine depends on these interfaces only. Package xsclient implements
// them over the wire protocol (the xenstored socket or /dev/xen/xenbus),
// package xssim is an in-memory xenstore for the simulated hosts, served to
// other processes by package xsserver, and package xswire is the wire codec.
// Both clients offer the rest of the xenstore operations (Mkdir, Directory,
// GetPerms, ...) on their concrete types.
//
// Everything a peer domain can write into xenstore is untrusted: values are
// returned as bytes, never interpreted here.
package xenstore

import (
	"errors"
	"fmt"
	"syscall"
)

// Ops are the operations the engine runs inside a transaction. Relative
// paths resolve against the caller's home, /local/domain/<domid>.
type Ops interface {
	// Read returns the value of a node.
	Read(path string) ([]byte, error)
	// Write sets the value of a node, creating it and any missing parents.
	Write(path string, value []byte) error
	// Rm removes a node and everything below it. Removing an absent node
	// whose parent exists is not an error.
	Rm(path string) error
	// SetPerms replaces a node's permissions; the first entry names the
	// owner.
	SetPerms(path string, perms []Perm) error
}

// Tx is an open transaction. Its operations see a consistent snapshot; Commit
// fails with an error wrapping syscall.EAGAIN when another writer changed what
// the transaction touched, and the caller should retry (see Update).
type Tx interface {
	Ops
	// Commit ends the transaction, applying its writes atomically.
	Commit() error
	// Abort ends the transaction, discarding its writes.
	Abort() error
}

// Watch is a registered xenstore watch. It fires once on registration, then
// whenever the watched node or anything below it changes; spurious events
// are allowed, so a receiver re-reads what it cares about.
type Watch interface {
	// Events delivers the paths that changed. When the receiver falls
	// behind, events may be coalesced, never all dropped: after a change,
	// at least one event is delivered.
	Events() <-chan string
	// Close removes the watch.
	Close() error
}

// Client is a connection to xenstore, as one domain, with the operations the
// engine runs outside a transaction. Relative paths resolve against the
// domain's home, DomainPath(domid). Closing the connection is up to whoever
// opened it: the implementations' concrete types have Close.
type Client interface {
	// Read returns the value of a node.
	Read(path string) ([]byte, error)
	// Rm removes a node and everything below it. Removing an absent node
	// whose parent exists is not an error.
	Rm(path string) error
	// Begin starts a transaction.
	Begin() (Tx, error)
	// Watch registers a watch on path, which may also be one of the special
	// paths @introduceDomain and @releaseDomain.
	Watch(path string) (Watch, error)
}

// MaxUpdateAttempts bounds how often Update retries a conflicting
// transaction before it gives up.
const MaxUpdateAttempts = 64

// Update runs fn inside a transaction and commits it, retrying from the start
// when the commit conflicts (EAGAIN), as libxenvchan does (docs/PROTOCOL.md §9).
func Update(c Client, fn func(tx Ops) error) error {
	for attempt := 0; ; attempt++ {
		tx, err := c.Begin()
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Abort()
			return err
		}
		err = tx.Commit()
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return err
		}
		if attempt+1 >= MaxUpdateAttempts {
			return fmt.Errorf("xenstore transaction still conflicting after %d attempts: %w", MaxUpdateAttempts, err)
		}
	}
}

// Error is the error returned by xenstore operations. Err is a syscall.Errno
// (ENOENT, EACCES, EAGAIN, EINVAL, E2BIG, ENOSPC, EQUOTA, ...), so callers can
// test it with errors.Is.
type Error struct {
	Op   string // the xenstore request, e.g. "read", "write", "transaction_start"
	Path string // the path, if the request has one
	Err  error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "xenstore " + e.Op + ": " + e.Err.Error()
	}
	return "xenstore " + e.Op + " " + e.Path + ": " + e.Err.Error()
}

// Unwrap returns the underlying errno.
func (e *Error) Unwrap() error { return e.Err }
