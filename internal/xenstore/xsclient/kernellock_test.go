package xsclient

import (
	"bytes"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// lockingDevice models the locks of Linux's xenbus device (drivers/xen/
// xenbus/xenbus_dev_frontend.c and xenbus_xs.c, Linux 6.1) that matter for
// pipelined requests:
//
//   - a write holds the file's msgbuffer mutex;
//   - an ordinary request is queued to xenstored and the write returns;
//   - WATCH and UNWATCH are sent to xenstored by the kernel itself, and the
//     write waits, still holding msgbuffer, until the kernel's xenbus thread
//     has read xenstored's answer;
//   - the xenbus thread reads xenstored's answers in order and, for an
//     ordinary request of the file, takes msgbuffer to queue the reply.
//
// So an ordinary reply that arrives while a WATCH or UNWATCH write holds
// msgbuffer blocks the xenbus thread, and the (UN)WATCH answer behind it is
// never read: the kernel deadlocks. The model notices a write stuck for
// longer than stuckAfter, counts it, and fails that write with EDEADLK so the
// test can end.
type lockingDevice struct {
	replyQueue
	msgbuf sync.Mutex // the file's msgbuffer_mutex

	toXenstored chan kernelReq // requests, in order
	answers     chan kernelReq // xenstored's answers, in order
	stop        chan struct{}  // closed by Close
	deadlocks   atomic.Int32   // (UN)WATCH writes that got stuck
	stuckAfter  time.Duration  // how long a stuck write waits
	delay       time.Duration  // xenstored's time to answer
	wg          sync.WaitGroup // the two goroutines below
}

// kernelReq is a request on its way to xenstored and back.
type kernelReq struct {
	m    xswire.Message
	done chan struct{} // WATCH/UNWATCH: closed once the xenbus thread read the answer
}

func newLockingDevice() *lockingDevice {
	d := &lockingDevice{
		toXenstored: make(chan kernelReq, 64),
		answers:     make(chan kernelReq, 64),
		stop:        make(chan struct{}),
		stuckAfter:  2 * time.Second,
		delay:       20 * time.Microsecond,
	}
	d.init()
	d.wg.Add(2)
	go d.xenstored()
	go d.xenbusThread()
	return d
}

// xenstored answers every request in order, after a short delay.
func (d *lockingDevice) xenstored() {
	defer d.wg.Done()
	for {
		select {
		case r := <-d.toXenstored:
			time.Sleep(d.delay)
			select {
			case d.answers <- r:
			case <-d.stop:
				return
			}
		case <-d.stop:
			return
		}
	}
}

// xenbusThread hands each answer over: an (UN)WATCH answer to the waiting
// write, an ordinary reply to the file's read queue under msgbuffer.
func (d *lockingDevice) xenbusThread() {
	defer d.wg.Done()
	for {
		select {
		case r := <-d.answers:
			if r.done != nil {
				close(r.done)
				continue
			}
			locked := make(chan struct{})
			go func() { d.msgbuf.Lock(); close(locked) }()
			select {
			case <-locked:
			case <-d.stop:
				return
			}
			reply := r.m
			if reply.Type == xswire.Read {
				reply.Payload = []byte("value")
			}
			d.queue(reply)
			d.msgbuf.Unlock()
		case <-d.stop:
			return
		}
	}
}

func (d *lockingDevice) queue(m xswire.Message) { d.push(m) }

func (d *lockingDevice) Write(b []byte) (int, error) {
	d.msgbuf.Lock()
	defer d.msgbuf.Unlock()
	m, err := xswire.ReadMessage(bytes.NewReader(b), xswire.DevicePayloadMax)
	if err != nil {
		return 0, syscall.EINVAL
	}
	select {
	case <-d.stop:
		return 0, os.ErrClosed
	default:
	}
	switch m.Type {
	case xswire.Watch, xswire.Unwatch:
		r := kernelReq{m: m, done: make(chan struct{})}
		d.toXenstored <- r
		select {
		case <-r.done:
		case <-time.After(d.stuckAfter):
			d.deadlocks.Add(1)
			return 0, syscall.EDEADLK
		case <-d.stop:
			return 0, os.ErrClosed
		}
		if m.Type == xswire.Watch {
			ss, _ := xswire.SplitStrings(m.Payload)
			d.queue(xswire.Message{Type: xswire.WatchEvent, Payload: []byte(ss[0] + "\x00" + ss[1] + "\x00")})
		}
		d.queue(xswire.Message{Type: m.Type, ReqID: m.ReqID, Payload: []byte("OK\x00")})
	default:
		d.toXenstored <- kernelReq{m: m}
	}
	return len(b), nil
}

func (d *lockingDevice) Close() error {
	if d.shut() {
		close(d.stop)
	}
	return nil
}

// TestDeviceWatchAloneWithKernelLocks: reads from several goroutines while
// another adds and removes watches, over a model of the Linux xenbus
// device's locks. Pipelining a read with a WATCH or UNWATCH deadlocks that
// kernel (lockingDevice); the client must keep them apart.
func TestDeviceWatchAloneWithKernelLocks(t *testing.T) {
	d := newLockingDevice()
	c := newClient(d, xswire.DevicePayloadMax, true)
	defer func() {
		c.Close()
		d.wg.Wait()
	}()

	const readers, watches = 3, 200
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, readers+1)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Read("/local/domain/1/data/x"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range watches {
		w, err := c.Watch("/local/domain/1/data/w")
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			t.Errorf("watch %d: %v", i, err)
			break
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Errorf("read: %v", err)
	default:
	}
	if n := d.deadlocks.Load(); n > 0 {
		t.Fatalf("%d WATCH/UNWATCH writes deadlocked the modelled kernel", n)
	}
}
