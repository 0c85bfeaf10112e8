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

	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// txDevice answers TRANSACTION_START a little later, from another
// goroutine, as xenstored does, and records how many were in flight at
// once; every other request gets ENOSYS.
type txDevice struct {
	replyQueue
	inFlight, most atomic.Int32
	next           atomic.Uint32
	wg             sync.WaitGroup
}

func (d *txDevice) Write(b []byte) (int, error) {
	if d.isClosed() {
		return 0, os.ErrClosed
	}
	m, err := xswire.ReadMessage(bytes.NewReader(b), xswire.DevicePayloadMax)
	if err != nil {
		return 0, syscall.EINVAL
	}
	if m.Type != xswire.TransactionStart {
		d.push(xswire.Message{Type: xswire.Error, ReqID: m.ReqID, Payload: []byte("ENOSYS\x00")})
		return len(b), nil
	}
	n := d.inFlight.Add(1)
	for {
		most := d.most.Load()
		if n <= most || d.most.CompareAndSwap(most, n) {
			break
		}
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		time.Sleep(time.Millisecond)
		d.inFlight.Add(-1)
		d.push(xswire.Message{Type: xswire.TransactionStart, ReqID: m.ReqID, Payload: fmt.Appendf(nil, "%d\x00", d.next.Add(1))})
	}()
	return len(b), nil
}

func (d *txDevice) Close() error {
	d.wg.Wait()
	d.shut()
	return nil
}

var _ io.ReadWriteCloser = (*txDevice)(nil)

// TestDeviceOneTransactionStartInFlight: on the xenbus device, concurrent
// Begin calls send their TRANSACTION_STARTs one at a time, each after the
// previous one's reply (see Client.txStart); on a socket they may overlap.
func TestDeviceOneTransactionStartInFlight(t *testing.T) {
	for _, device := range []bool{true, false} {
		d := &txDevice{}
		d.init()
		c := newClient(d, xswire.DevicePayloadMax, device)
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Begin(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		c.Close()
		most := d.most.Load()
		if device && most != 1 {
			t.Errorf("xenbus device: %d TRANSACTION_STARTs in flight at once, want 1", most)
		}
		if !device && most < 2 {
			t.Logf("socket: only %d in flight at once (they may overlap; this run they did not)", most)
		}
	}
}
