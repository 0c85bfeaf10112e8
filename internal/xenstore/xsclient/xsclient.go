// Package xsclient is a xenstore client speaking the wire protocol
// (docs/PROTOCOL.md §13) over xenstored's unix socket or the /dev/xen/xenbus
// device. It implements xenstore.Client.
//
// Requests may be issued from many goroutines at once: each carries its own
// req_id, and one reader goroutine per connection hands every reply to the
// request it answers and every WATCH_EVENT to the watch its token names.
package xsclient

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// Errors a call fails with once the connection is unusable. They are wrapped
// in a *xenstore.Error naming the request.
var (
	// ErrConnectionLost reports that the connection to xenstored broke
	// (EOF, a read or write error, or a protocol violation by the peer).
	ErrConnectionLost = errors.New("connection to xenstored was lost")
	// ErrClosed reports a call on, or interrupted by, Client.Close.
	ErrClosed = errors.New("xenstore client is closed")
)

// Default access paths (docs/PROTOCOL.md §13.6; libxenstore xs_open).
const (
	// DefaultRunDir is xenstored's run directory when $XENSTORED_RUNDIR
	// is unset.
	DefaultRunDir = "/var/run/xenstored"
	// XenbusDevice is the Linux xenbus device.
	XenbusDevice = "/dev/xen/xenbus"
	// ProcXenbus is the older Linux location of the xenbus device.
	ProcXenbus = "/proc/xen/xenbus"
)

// DeviceTransactions is how many transactions a Client on the xenbus device
// keeps open at once: below C xenstored's default per-domain quota (10), so
// that other programs of the domain keep some.
const DeviceTransactions = 4

// Client is a connection to xenstore. It is safe for concurrent use.
type Client struct {
	rw         io.ReadWriteCloser
	maxPayload int
	device     bool // rw is the xenbus device, which may refuse a write

	wmu sync.Mutex // serialises writes of whole messages

	// oneAtATime keeps one request of ours in flight on the xenbus device,
	// from its write to its reply, as libxenstore does per handle. Linux's
	// xenbus_dev_frontend cannot take more (drivers/xen/xenbus/, Linux 6.1):
	//
	//   - A write's body stays in the file's single message buffer until the
	//     kernel's xenbus thread copies it to xenstored's ring
	//     (xenbus_dev_request_and_reply queues a pointer to it), but the
	//     write returns at once and the next write overwrites that buffer:
	//     an earlier request goes out with a later one's body. In the lab,
	//     concurrent Listens in a domU got EINVAL from reads, writes,
	//     set_perms and rm inside their transactions, and a TRANSACTION_END
	//     sent with a wrong body left its transaction open in xenstored while
	//     the kernel forgot it, until the domain's transaction quota was
	//     used up for good.
	//   - It books each TRANSACTION_START under id 0 and gives a reply's id
	//     to the first such booking it finds.
	//   - WATCH and UNWATCH are sent by the kernel itself while the write
	//     holds the file's msgbuffer mutex, which the xenbus thread needs to
	//     hand over any earlier request's reply: a reply that comes first
	//     blocks that thread, and every xenstore user of the domain hangs.
	//
	// Unused for the daemon socket, which takes pipelined requests.
	oneAtATime sync.Mutex

	// txSlots bounds the transactions of ours open at once on the xenbus
	// device (DeviceTransactions); a Begin waits here for one to end.
	// xenstored counts open transactions per domain (C xenstored allows
	// 10 by default) and refuses more, and with one request in flight a
	// refused TRANSACTION_START takes the turn of a request that would
	// have ended a transaction: in the lab, 100 Listens at once in a domU
	// under C xenstored made 4762 refused attempts in 160 s and many never
	// got through. Nil for the daemon socket.
	txSlots chan struct{}

	mu        sync.Mutex
	nextReq   uint32
	pending   map[uint32]*call
	watchReqs []*call // outstanding WATCH/UNWATCH, oldest first
	watches   map[string]*watch
	nextToken uint64
	err       error // set once the connection is unusable
	closing   bool

	readerDone chan struct{}
	closeOnce  sync.Once
}

type call struct {
	typ   xswire.Type
	reply chan xswire.Message // buffered 1; closed if the connection dies
}

// Dial connects to xenstore the way libxenstore's xs_open does: first the
// daemon socket ($XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
// /var/run/xenstored/socket), then the device ($XENSTORED_PATH, else
// /dev/xen/xenbus if it exists, else /proc/xen/xenbus). A path that stat
// reports to be a socket is dialled; any other path is opened as a device.
func Dial() (*Client, error) {
	sock := os.Getenv("XENSTORED_PATH")
	if sock == "" {
		rundir := os.Getenv("XENSTORED_RUNDIR")
		if rundir == "" {
			rundir = DefaultRunDir
		}
		sock = filepath.Join(rundir, "socket")
	}
	c, err1 := openPath(sock)
	if err1 == nil {
		return c, nil
	}
	dev := os.Getenv("XENSTORED_PATH")
	if dev == "" {
		dev = ProcXenbus
		if _, err := os.Stat(XenbusDevice); err == nil {
			dev = XenbusDevice
		}
	}
	c, err2 := openPath(dev)
	if err2 == nil {
		return c, nil
	}
	return nil, fmt.Errorf("xenstore: cannot connect: %v; %w", err1, err2)
}

func openPath(p string) (*Client, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSocket != 0 {
		return DialSocket(p)
	}
	return OpenDevice(p)
}

// DialSocket connects to xenstored's unix socket at path.
func DialSocket(path string) (*Client, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return NewClient(conn, xswire.PayloadMax), nil
}

// OpenDevice opens the xenbus device at path (normally /dev/xen/xenbus).
// Payloads are limited to xswire.DevicePayloadMax, what fits the kernel's
// message buffer.
func OpenDevice(path string) (*Client, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	c := newClient(f, xswire.DevicePayloadMax, true)
	return c, nil
}

// NewClient runs the protocol over rw, refusing to send payloads longer than
// maxPayload (at most xswire.PayloadMax). Closing rw must unblock a pending
// Read, as it does for sockets and pollable files. The client owns rw.
func NewClient(rw io.ReadWriteCloser, maxPayload int) *Client {
	return newClient(rw, maxPayload, false)
}

func newClient(rw io.ReadWriteCloser, maxPayload int, device bool) *Client {
	if maxPayload <= 0 || maxPayload > xswire.PayloadMax {
		maxPayload = xswire.PayloadMax
	}
	c := &Client{
		rw:         rw,
		maxPayload: maxPayload,
		device:     device,
		pending:    make(map[uint32]*call),
		watches:    make(map[string]*watch),
		readerDone: make(chan struct{}),
	}
	if device {
		c.txSlots = make(chan struct{}, DeviceTransactions)
	}
	go c.reader()
	return c
}

// Close ends the connection: outstanding and later calls fail with
// ErrClosed, every watch's Events channel is closed, and the reader
// goroutine has exited when Close returns. xenstored aborts the
// connection's open transactions and removes its watches.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		err = c.rw.Close()
		<-c.readerDone
	})
	if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
		err = nil // the reader closed it first, after losing the connection
	}
	return err
}

// Interface checks.
var (
	_ xenstore.Client = (*Client)(nil)
	_ xenstore.Tx     = (*tx)(nil)
	_ xenstore.Watch  = (*watch)(nil)
)
