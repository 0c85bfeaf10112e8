package xsclient

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// Requests: sending one and awaiting its reply, and the operations of
// xenstore.Client built on them.

func opErr(op, path string, err error) error {
	return &xenstore.Error{Op: op, Path: path, Err: err}
}

func opName(t xswire.Type) string {
	switch t {
	case xswire.Directory:
		return "directory"
	case xswire.Read:
		return "read"
	case xswire.GetPerms:
		return "get_perms"
	case xswire.Watch:
		return "watch"
	case xswire.Unwatch:
		return "unwatch"
	case xswire.TransactionStart:
		return "transaction_start"
	case xswire.TransactionEnd:
		return "transaction_end"
	case xswire.GetDomainPath:
		return "get_domain_path"
	case xswire.Write:
		return "write"
	case xswire.Mkdir:
		return "mkdir"
	case xswire.Rm:
		return "rm"
	case xswire.SetPerms:
		return "set_perms"
	}
	return "request " + t.String()
}

// request sends one request and waits for its reply. path only labels
// errors. An ERROR reply becomes a *xenstore.Error carrying the errno.
func (c *Client) request(t xswire.Type, tx uint32, path string, payload []byte) ([]byte, error) {
	op := opName(t)
	if len(payload) > c.maxPayload {
		return nil, opErr(op, path, syscall.E2BIG)
	}
	cl := &call{typ: t, reply: make(chan xswire.Message, 1)}
	if c.device {
		c.oneAtATime.Lock()
		defer c.oneAtATime.Unlock()
	}

	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, opErr(op, path, err)
	}
	id := c.allocReqID()
	c.pending[id] = cl
	if t == xswire.Watch || t == xswire.Unwatch {
		c.watchReqs = append(c.watchReqs, cl)
	}
	c.mu.Unlock()

	msg, _ := xswire.AppendMessage(make([]byte, 0, xswire.HeaderSize+len(payload)), xswire.Message{Type: t, ReqID: id, TxID: tx, Payload: payload})
	c.wmu.Lock()
	n, werr := c.rw.Write(msg)
	c.wmu.Unlock()
	if werr != nil {
		var errno syscall.Errno
		if c.device && n == 0 && errors.As(werr, &errno) {
			// The xenbus device consumed the whole message and refused
			// it (a watch it could not register, a message too large):
			// the stream is intact and no reply will come.
			c.mu.Lock()
			if c.pending[id] == cl {
				delete(c.pending, id)
				c.dropWatchReq(cl)
				c.mu.Unlock()
				return nil, opErr(op, path, errno)
			}
			c.mu.Unlock()
		} else {
			// A failed or partial write leaves the stream unusable: close
			// it, and the reader fails every call, this one included.
			c.mu.Lock()
			if c.err == nil && !c.closing {
				c.err = fmt.Errorf("%w: %v", ErrConnectionLost, werr)
			}
			c.mu.Unlock()
			_ = c.rw.Close()
		}
	}

	m, ok := <-cl.reply
	if !ok {
		return nil, opErr(op, path, c.lostErr())
	}
	switch m.Type {
	case xswire.Error:
		return nil, opErr(op, path, xswire.ParseErrorPayload(m.Payload))
	case t:
		return m.Payload, nil
	default:
		// libxenstore treats a mismatched reply type as fatal (EBADF).
		return nil, opErr(op, path, fmt.Errorf("%w: reply of type %s", syscall.EBADMSG, m.Type))
	}
}

// allocReqID returns an unused request id, never 0 (reserved for the
// device's synthesised replies); c.mu must be held.
func (c *Client) allocReqID() uint32 {
	for {
		c.nextReq++
		if c.nextReq == 0 {
			continue
		}
		if _, busy := c.pending[c.nextReq]; !busy {
			return c.nextReq
		}
	}
}

// pathPayload is the payload `path\0`.
func pathPayload(op, path string) ([]byte, error) {
	b, err := xswire.AppendString(nil, path)
	if err != nil {
		return nil, opErr(op, path, syscall.EINVAL)
	}
	return b, nil
}

func (c *Client) read(tx uint32, path string) ([]byte, error) {
	p, err := pathPayload("read", path)
	if err != nil {
		return nil, err
	}
	return c.request(xswire.Read, tx, path, p)
}

func (c *Client) write(tx uint32, path string, value []byte) error {
	p, err := pathPayload("write", path)
	if err != nil {
		return err
	}
	_, err = c.request(xswire.Write, tx, path, append(p, value...))
	return err
}

func (c *Client) simple(t xswire.Type, tx uint32, path string) error {
	p, err := pathPayload(opName(t), path)
	if err != nil {
		return err
	}
	_, err = c.request(t, tx, path, p)
	return err
}

func (c *Client) directory(tx uint32, path string) ([]string, error) {
	p, err := pathPayload("directory", path)
	if err != nil {
		return nil, err
	}
	r, err := c.request(xswire.Directory, tx, path, p)
	if err != nil {
		return nil, err
	}
	names, err := xswire.SplitStrings(r)
	if err != nil {
		return nil, opErr("directory", path, fmt.Errorf("%w: %v", syscall.EBADMSG, err))
	}
	return names, nil
}

func (c *Client) getPerms(tx uint32, path string) ([]xenstore.Perm, error) {
	p, err := pathPayload("get_perms", path)
	if err != nil {
		return nil, err
	}
	r, err := c.request(xswire.GetPerms, tx, path, p)
	if err != nil {
		return nil, err
	}
	ss, err := xswire.SplitStrings(r)
	if err != nil || len(ss) == 0 {
		return nil, opErr("get_perms", path, fmt.Errorf("%w: malformed permissions %q", syscall.EBADMSG, r))
	}
	perms := make([]xenstore.Perm, len(ss))
	for i, s := range ss {
		if perms[i], err = xenstore.ParsePerm(s); err != nil {
			return nil, opErr("get_perms", path, fmt.Errorf("%w: %v", syscall.EBADMSG, err))
		}
	}
	return perms, nil
}

func (c *Client) setPerms(tx uint32, path string, perms []xenstore.Perm) error {
	p, err := pathPayload("set_perms", path)
	if err != nil {
		return err
	}
	if len(perms) == 0 {
		return opErr("set_perms", path, syscall.EINVAL)
	}
	for _, pm := range perms {
		if p, err = xswire.AppendString(p, pm.String()); err != nil {
			return opErr("set_perms", path, syscall.EINVAL)
		}
	}
	_, err = c.request(xswire.SetPerms, tx, path, p)
	return err
}

// Read returns the value of a node.
func (c *Client) Read(path string) ([]byte, error) { return c.read(0, path) }

// Write sets the value of a node, creating it and any missing parents.
func (c *Client) Write(path string, value []byte) error { return c.write(0, path, value) }

// Mkdir creates a node with an empty value, and any missing parents.
func (c *Client) Mkdir(path string) error { return c.simple(xswire.Mkdir, 0, path) }

// Rm removes a node and everything below it.
func (c *Client) Rm(path string) error { return c.simple(xswire.Rm, 0, path) }

// Directory lists the names of a node's children.
func (c *Client) Directory(path string) ([]string, error) { return c.directory(0, path) }

// GetPerms returns a node's permissions; the first entry names the owner.
func (c *Client) GetPerms(path string) ([]xenstore.Perm, error) { return c.getPerms(0, path) }

// SetPerms replaces a node's permissions.
func (c *Client) SetPerms(path string, perms []xenstore.Perm) error {
	return c.setPerms(0, path, perms)
}

// DomainPath returns the home path of domain domid, as xenstored reports it.
func (c *Client) DomainPath(domid uint16) (string, error) {
	arg := strconv.FormatUint(uint64(domid), 10)
	r, err := c.request(xswire.GetDomainPath, 0, "", append([]byte(arg), 0))
	if err != nil {
		return "", err
	}
	ss, err := xswire.ExactStrings(r, 1)
	if err != nil || ss[0] == "" {
		return "", opErr("get_domain_path", "", fmt.Errorf("%w: malformed reply %q", syscall.EBADMSG, r))
	}
	return ss[0], nil
}

// lostErr is why the connection is unusable, once the reader has failed
// every pending call (c.err is set before that).
func (c *Client) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
