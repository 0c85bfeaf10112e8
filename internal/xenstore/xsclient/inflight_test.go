package xsclient

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// bufferDevice models how Linux's xenbus device (xenbus_dev_frontend.c,
// Linux 6.1) holds a request's body: a write copies the message into the
// file's one message buffer and returns; the kernel's xenbus thread reads
// the body from that buffer later, when it sends the request to xenstored.
// A second write before then overwrites the first request's body. Each
// answer comes a little later, from another goroutine, as from xenstored:
// a READ's value is the path that reached "xenstored", a
// TRANSACTION_START's a fresh id. It records how many requests were in
// flight at once.
type bufferDevice struct {
	replyQueue
	bufMu          sync.Mutex
	buf            []byte // the file's message buffer: the last body written
	inFlight, most atomic.Int32
	nextTx         atomic.Uint32
	wg             sync.WaitGroup
}

func (d *bufferDevice) Write(b []byte) (int, error) {
	if d.isClosed() {
		return 0, os.ErrClosed
	}
	m, err := xswire.ReadMessage(bytes.NewReader(b), xswire.DevicePayloadMax)
	if err != nil {
		return 0, syscall.EINVAL
	}
	d.bufMu.Lock()
	d.buf = append(d.buf[:0], m.Payload...)
	d.bufMu.Unlock()
	n := d.inFlight.Add(1)
	for most := d.most.Load(); n > most && !d.most.CompareAndSwap(most, n); most = d.most.Load() {
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		time.Sleep(200 * time.Microsecond)
		d.bufMu.Lock()
		sent := bytes.Clone(d.buf[:min(len(m.Payload), len(d.buf))])
		d.bufMu.Unlock()
		d.inFlight.Add(-1)
		reply := xswire.Message{Type: m.Type, ReqID: m.ReqID, TxID: m.TxID}
		switch m.Type {
		case xswire.Read:
			reply.Payload = bytes.TrimSuffix(sent, []byte{0})
		case xswire.TransactionStart:
			reply.Payload = fmt.Appendf(nil, "%d\x00", d.nextTx.Add(1))
		default:
			reply.Payload = []byte("OK\x00")
		}
		d.push(reply)
	}()
	return len(b), nil
}

func (d *bufferDevice) Close() error {
	d.wg.Wait()
	d.shut()
	return nil
}

var _ io.ReadWriteCloser = (*bufferDevice)(nil)

// TestDeviceOneRequestInFlight: on the xenbus device, concurrent requests
// of every kind go out one at a time, each after the previous one's reply
// (Client.oneAtATime), so no request is sent with another's body.
func TestDeviceOneRequestInFlight(t *testing.T) {
	d := &bufferDevice{}
	d.init()
	c := newClient(d, xswire.DevicePayloadMax, true)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/local/domain/1/data/reader-%d", i)
			for range 5 {
				got, err := c.Read(path)
				if err != nil {
					t.Error(err)
					return
				}
				if string(got) != path {
					t.Errorf("READ %s reached xenstored as READ %s", path, got)
					return
				}
				tx, err := c.Begin()
				if err == nil {
					err = tx.Commit()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	c.Close()
	if most := d.most.Load(); most != 1 {
		t.Errorf("xenbus device: %d requests in flight at once, want 1", most)
	}
}

// TestDeviceTransactionSlots: on the xenbus device a Client keeps at most
// DeviceTransactions transactions open; the next Begin waits until one
// ends (commit, abort, or a failed end alike), and Close ends the wait.
func TestDeviceTransactionSlots(t *testing.T) {
	d := &bufferDevice{}
	d.init()
	c := newClient(d, xswire.DevicePayloadMax, true)
	var open []xenstore.Tx
	for range DeviceTransactions {
		tx, err := c.Begin()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, tx)
	}
	begun := make(chan error, 1)
	go func() {
		tx, err := c.Begin()
		if err == nil {
			err = tx.Abort()
		}
		begun <- err
	}()
	select {
	case err := <-begun:
		t.Fatalf("Begin with %d transactions open returned (%v), want it to wait", DeviceTransactions, err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := open[0].Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-begun; err != nil {
		t.Fatalf("Begin after a commit: %v", err)
	}

	// All slots taken again (open[1:] and this one); Close ends a waiting
	// Begin with an error.
	if _, err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := c.Begin()
		begun <- err
	}()
	c.Close()
	if err := <-begun; err == nil {
		t.Fatal("Begin waiting for a slot returned no error after Close")
	}
}
