package xsclient

import (
	"bufio"
	"fmt"

	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// The reader goroutine: it hands every reply to the request it answers and
// every WATCH_EVENT to the watch its token names, until the connection
// fails.

// reader is the only goroutine that reads from rw.
func (c *Client) reader() {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.rw, xswire.HeaderSize+xswire.PayloadMax)
	for {
		// Replies and events may carry up to XENSTORE_PAYLOAD_MAX whatever
		// the transport's limit for requests.
		m, err := xswire.ReadMessage(br, xswire.PayloadMax)
		if err != nil {
			c.fail(err)
			return
		}
		if m.Type == xswire.WatchEvent {
			c.dispatchEvent(m.Payload)
			continue
		}
		c.dispatchReply(m)
	}
}

func (c *Client) dispatchReply(m xswire.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.pending[m.ReqID]
	if !ok {
		// The xenbus device answers WATCH and UNWATCH itself and (in some
		// kernels) leaves req_id 0, which this client never uses: give
		// such a reply to the oldest outstanding WATCH/UNWATCH.
		if m.ReqID != 0 || len(c.watchReqs) == 0 {
			return // an answer to nothing we asked: drop it
		}
		cl = c.watchReqs[0]
		for id, p := range c.pending {
			if p == cl {
				delete(c.pending, id)
				break
			}
		}
	} else {
		delete(c.pending, m.ReqID)
	}
	c.dropWatchReq(cl)
	cl.reply <- m
}

// dropWatchReq removes cl from watchReqs; c.mu must be held.
func (c *Client) dropWatchReq(cl *call) {
	for i, p := range c.watchReqs {
		if p == cl {
			c.watchReqs = append(c.watchReqs[:i], c.watchReqs[i+1:]...)
			return
		}
	}
}

func (c *Client) dispatchEvent(p []byte) {
	path, token, err := xswire.ParseWatchEvent(p)
	if err != nil {
		return // malformed event: nothing to route it by
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.watches[token]; ok {
		w.deliver(path)
	}
}

// fail marks the connection unusable and fails every pending call and
// watch. It runs once, from the reader, when the stream ends.
func (c *Client) fail(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		if c.closing {
			c.err = ErrClosed
		} else {
			c.err = fmt.Errorf("%w: %v", ErrConnectionLost, cause)
		}
	}
	for id, cl := range c.pending {
		delete(c.pending, id)
		close(cl.reply)
	}
	c.watchReqs = nil
	for tok, w := range c.watches {
		delete(c.watches, tok)
		w.closeEvents()
	}
	// Unblock writers and make later writes fail; the reader has ended.
	_ = c.rw.Close()
}
