package xsclient

import (
	"strconv"
	"sync"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// eventBuffer is how many undelivered events a watch holds before it starts
// coalescing them.
const eventBuffer = 32

// Watch registers a watch on path, which may also be @introduceDomain or
// @releaseDomain. Its Events channel receives the event xenstored sends on
// registration, then one per change; it is closed by Watch.Close, by
// Client.Close, or when the connection is lost.
func (c *Client) Watch(path string) (xenstore.Watch, error) {
	c.mu.Lock()
	c.nextToken++
	token := "xsclient-" + strconv.FormatUint(c.nextToken, 10)
	w := &watch{c: c, path: path, token: token, events: make(chan string, eventBuffer)}
	if c.err == nil {
		// Registered before the request: the first event may arrive
		// before the reply.
		c.watches[token] = w
	}
	c.mu.Unlock()

	p, err := xswire.JoinStrings(path, token)
	if err != nil {
		c.forget(w)
		return nil, opErr("watch", path, syscall.EINVAL)
	}
	if _, err := c.request(xswire.Watch, 0, path, p); err != nil {
		c.forget(w)
		return nil, err
	}
	return w, nil
}

// forget unregisters w and closes its channel.
func (c *Client) forget(w *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches[w.token] == w {
		delete(c.watches, w.token)
	}
	w.closeEvents()
}

// watch is a registered watch. Its fields below c are guarded by c.mu.
type watch struct {
	c      *Client
	path   string
	token  string
	events chan string
	closed bool
	once   sync.Once
}

// deliver queues an event without ever blocking the reader: when the
// receiver lags and the buffer is full, the oldest event is dropped and the
// watched path itself is queued, so that at least one event follows every
// change. c.mu must be held.
func (w *watch) deliver(path string) {
	if w.closed {
		return
	}
	select {
	case w.events <- path:
		return
	default:
	}
	select {
	case <-w.events:
	default:
	}
	select {
	case w.events <- w.path:
	default:
	}
}

// closeEvents closes the channel once; c.mu must be held.
func (w *watch) closeEvents() {
	if !w.closed {
		w.closed = true
		close(w.events)
	}
}

// Events delivers the paths that changed, as xenstored reports them.
func (w *watch) Events() <-chan string { return w.events }

// Close removes the watch from xenstored and closes Events.
func (w *watch) Close() error {
	var err error
	w.once.Do(func() {
		w.c.mu.Lock()
		registered := w.c.watches[w.token] == w
		w.c.mu.Unlock()
		w.c.forget(w)
		if !registered {
			return // the connection is gone, and the watch with it
		}
		var p []byte
		p, err = xswire.JoinStrings(w.path, w.token)
		if err == nil {
			_, err = w.c.request(xswire.Unwatch, 0, w.path, p)
		}
	})
	return err
}
