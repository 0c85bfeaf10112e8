package xsclient

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// replyQueue is the read side of a fake xenbus device: what the client's
// reads return, in order, until the device is closed.
type replyQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	out    bytes.Buffer
	closed bool
}

func (q *replyQueue) init() { q.cond = sync.NewCond(&q.mu) }

// push queues one message for the client.
func (q *replyQueue) push(m xswire.Message) {
	b, _ := xswire.AppendMessage(nil, m)
	q.mu.Lock()
	q.out.Write(b)
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *replyQueue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

func (q *replyQueue) Read(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.out.Len() == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return 0, os.ErrClosed
	}
	return q.out.Read(p)
}

// shut closes the queue and reports whether it was open.
func (q *replyQueue) shut() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	was := !q.closed
	q.closed = true
	q.cond.Broadcast()
	return was
}

// fakeDevice behaves like the Linux xenbus device of old kernels: it takes
// one whole message per write, answers WATCH and UNWATCH itself with a reply
// whose req_id is 0, sends watch events with req_id 0 and extra payload
// after the token, and may refuse a write with an errno.
type fakeDevice struct {
	replyQueue
	mu     sync.Mutex
	refuse syscall.Errno // refuse the next WATCH with this errno
	seen   []xswire.Message
}

func newFakeDevice() *fakeDevice {
	d := &fakeDevice{}
	d.init()
	return d
}

func (d *fakeDevice) queue(m xswire.Message) { d.push(m) }

func (d *fakeDevice) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.isClosed() {
		return 0, os.ErrClosed
	}
	m, err := xswire.ReadMessage(bytes.NewReader(b), xswire.DevicePayloadMax)
	if err != nil {
		return 0, &os.PathError{Op: "write", Path: "/dev/xen/xenbus", Err: syscall.EINVAL}
	}
	d.seen = append(d.seen, m)
	switch m.Type {
	case xswire.Watch, xswire.Unwatch:
		if m.Type == xswire.Watch && d.refuse != 0 {
			e := d.refuse
			d.refuse = 0
			return 0, &os.PathError{Op: "write", Path: "/dev/xen/xenbus", Err: e}
		}
		ss, _ := xswire.SplitStrings(m.Payload)
		if m.Type == xswire.Watch {
			// The first event may well beat the reply.
			d.queue(xswire.Message{Type: xswire.WatchEvent, Payload: []byte(ss[0] + "\x00" + ss[1] + "\x00kernel-extra")})
		}
		d.queue(xswire.Message{Type: m.Type, Payload: []byte("OK\x00")})
	case xswire.Read:
		d.queue(xswire.Message{Type: xswire.Read, ReqID: m.ReqID, TxID: m.TxID, Payload: []byte("value")})
	default:
		d.queue(xswire.Message{Type: xswire.Error, ReqID: m.ReqID, TxID: m.TxID, Payload: []byte("ENOSYS\x00")})
	}
	return len(b), nil
}

func (d *fakeDevice) Close() error {
	d.shut()
	return nil
}

func (d *fakeDevice) fire(path, token string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue(xswire.Message{Type: xswire.WatchEvent, Payload: []byte(path + "\x00" + token + "\x00")})
}

var _ io.ReadWriteCloser = (*fakeDevice)(nil)

func TestDeviceQuirks(t *testing.T) {
	d := newFakeDevice()
	c := newClient(d, xswire.DevicePayloadMax, true)
	defer c.Close()

	w, err := c.Watch("/dev/w")
	if err != nil {
		t.Fatalf("WATCH answered with req_id 0: %v", err)
	}
	select {
	case p := <-w.Events():
		if p != "/dev/w" {
			t.Fatalf("event %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	tok := w.(*watch).token
	d.fire("/dev/w/child", tok)
	select {
	case p := <-w.Events():
		if p != "/dev/w/child" {
			t.Fatalf("event %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	// Ordinary replies still match by req_id.
	if v, err := c.Read("/x"); err != nil || string(v) != "value" {
		t.Fatalf("Read %q %v", v, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("UNWATCH answered with req_id 0: %v", err)
	}

	// A watch the kernel refuses fails with its errno; the stream goes on.
	d.mu.Lock()
	d.refuse = syscall.EEXIST
	d.mu.Unlock()
	if _, err := c.Watch("/refused"); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("refused watch: %v", err)
	}
	if v, err := c.Read("/x"); err != nil || string(v) != "value" {
		t.Fatalf("Read after refusal %q %v", v, err)
	}
	c.mu.Lock()
	if len(c.pending) != 0 || len(c.watchReqs) != 0 || len(c.watches) != 0 {
		t.Errorf("leftover state: %d pending, %d watch requests, %d watches", len(c.pending), len(c.watchReqs), len(c.watches))
	}
	c.mu.Unlock()

	// The device's payload limit is enforced locally, and nothing is sent.
	d.mu.Lock()
	before := len(d.seen)
	d.mu.Unlock()
	if err := c.Write("/p", make([]byte, xswire.DevicePayloadMax-2)); !errors.Is(err, syscall.E2BIG) {
		t.Fatalf("over the device limit: %v", err)
	}
	d.mu.Lock()
	after := len(d.seen)
	d.mu.Unlock()
	if after != before {
		t.Fatal("an oversized request was sent")
	}
	// Exactly at the limit it goes out (and the fake answers ENOSYS).
	if err := c.Write("/p", make([]byte, xswire.DevicePayloadMax-3)); !errors.Is(err, syscall.ENOSYS) {
		t.Fatalf("at the device limit: %v", err)
	}

	// Request ids are never 0.
	d.mu.Lock()
	for _, m := range d.seen {
		if m.ReqID == 0 {
			t.Errorf("request %s sent with req_id 0", m.Type)
		}
	}
	d.mu.Unlock()
}

func TestReqIDWrapSkipsZero(t *testing.T) {
	c := &Client{pending: map[uint32]*call{}, nextReq: 0xfffffffe}
	c.pending[1] = &call{}
	ids := []uint32{c.allocReqID(), c.allocReqID()}
	if ids[0] != 0xffffffff || ids[1] != 2 {
		t.Fatalf("ids %v", ids)
	}
}

func TestMismatchedReplyType(t *testing.T) {
	a, b := pipePair()
	defer b.Close()
	c := NewClient(a, 0)
	defer c.Close()
	go func() {
		m, err := xswire.ReadMessage(b, xswire.PayloadMax)
		if err != nil {
			return
		}
		_ = xswire.WriteMessage(b, xswire.Message{Type: xswire.Directory, ReqID: m.ReqID, Payload: []byte("x\x00")})
		// A reply to nothing, and a malformed event, are both ignored.
		_ = xswire.WriteMessage(b, xswire.Message{Type: xswire.Read, ReqID: 999})
		_ = xswire.WriteMessage(b, xswire.Message{Type: xswire.WatchEvent, Payload: []byte("no-nul")})
		m, err = xswire.ReadMessage(b, xswire.PayloadMax)
		if err != nil {
			return
		}
		_ = xswire.WriteMessage(b, xswire.Message{Type: xswire.Error, ReqID: m.ReqID, Payload: []byte("EWHATEVER\x00")})
		// Then a hostile header: the client must give up on the stream.
		_, _ = b.Write(xswire.AppendHeader(nil, xswire.Header{Type: xswire.Read, ReqID: 5, Len: 0xffffffff}))
	}()
	if _, err := c.Read("/a"); !errors.Is(err, syscall.EBADMSG) {
		t.Fatalf("mismatched type: %v", err)
	}
	if _, err := c.Read("/b"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("unknown error name: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Read("/c")
		if errors.Is(err, ErrConnectionLost) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostile header did not kill the connection: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
