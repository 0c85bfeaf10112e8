package xssim

import (
	"errors"
	"strconv"
	"sync"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// Connect returns an in-process Client for domain domid over a new Session.
// Its watches deliver events on a channel buffered for 16 events, fed with
// non-blocking sends: when the buffer is full the event is dropped, since
// the receiver already has events pending (the coalescing rule of the
// xenstore.Watch interface). The channels are closed when the watch, the
// client, or its session (by ReleaseDomain) is closed.
func (s *Store) Connect(domid uint16) *Client {
	c := &Client{watches: make(map[string]*clientWatch)}
	c.sess = s.newSession(domid, c.dispatch, c.shutdown)
	return c
}

// watchBuffer is the capacity of a Client watch's event channel.
const watchBuffer = 16

// Client is a connection to a Store as one domain, returned by
// Store.Connect. It implements xenstore.Client, and offers the rest of the
// xenstore operations too. Paths may be relative to the domain's home.
type Client struct {
	sess    *Session
	mu      sync.Mutex
	watches map[string]*clientWatch // by token
	next    uint64
}

// The operations outside a transaction; see the Session methods.

func (c *Client) Read(path string) ([]byte, error)        { return c.sess.Read(0, path) }
func (c *Client) Write(path string, value []byte) error   { return c.sess.Write(0, path, value) }
func (c *Client) Mkdir(path string) error                 { return c.sess.Mkdir(0, path) }
func (c *Client) Rm(path string) error                    { return c.sess.Rm(0, path) }
func (c *Client) Directory(path string) ([]string, error) { return c.sess.Directory(0, path) }
func (c *Client) GetPerms(path string) ([]xenstore.Perm, error) {
	return c.sess.GetPerms(0, path)
}
func (c *Client) SetPerms(path string, perms []xenstore.Perm) error {
	return c.sess.SetPerms(0, path, perms)
}

// DomainPath returns the home path of domain domid.
func (c *Client) DomainPath(domid uint16) (string, error) { return xenstore.DomainPath(domid), nil }

// Begin starts a transaction. The returned Tx also has the Mkdir,
// Directory and GetPerms operations.
func (c *Client) Begin() (xenstore.Tx, error) {
	id, err := c.sess.TransactionStart()
	if err != nil {
		return nil, err
	}
	return &clientTx{sess: c.sess, id: id}, nil
}

// Watch registers a watch on path, which may also be one of the special
// paths @introduceDomain and @releaseDomain.
func (c *Client) Watch(path string) (xenstore.Watch, error) {
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

// Close ends the connection, aborting its transactions and removing its
// watches. Closing twice is harmless.
func (c *Client) Close() error {
	c.sess.Close()
	return nil
}

// dispatch is the session's deliver function.
func (c *Client) dispatch(path, token string) {
	c.mu.Lock()
	w := c.watches[token]
	c.mu.Unlock()
	if w != nil {
		w.send(path)
	}
}

// shutdown runs when the session closes: it closes every watch channel.
func (c *Client) shutdown() {
	c.mu.Lock()
	ws := c.watches
	c.watches = make(map[string]*clientWatch)
	c.mu.Unlock()
	for _, w := range ws {
		w.shut()
	}
}

// clientTx is the Tx returned by Client.Begin.
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
func (t *clientTx) GetPerms(path string) ([]xenstore.Perm, error) {
	return t.sess.GetPerms(t.id, path)
}
func (t *clientTx) SetPerms(path string, perms []xenstore.Perm) error {
	return t.sess.SetPerms(t.id, path, perms)
}
func (t *clientTx) Commit() error { return t.sess.TransactionEnd(t.id, true) }
func (t *clientTx) Abort() error  { return t.sess.TransactionEnd(t.id, false) }

// clientWatch is the Watch returned by Client.Watch.
type clientWatch struct {
	c           *Client
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
	_ xenstore.Client = (*Client)(nil)
	_ xenstore.Tx     = (*clientTx)(nil)
	_ xenstore.Watch  = (*clientWatch)(nil)
)
