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

// Client is a connection to xenstore. It is safe for concurrent use.
type Client struct {
	rw         io.ReadWriteCloser
	maxPayload int
	device     bool // rw is the xenbus device, which may refuse a write

	wmu sync.Mutex // serialises writes of whole messages

	// gate keeps WATCH and UNWATCH alone on the xenbus device: no other
	// request of ours may await its reply while one of them is written.
	// Linux's xenbus_dev_frontend holds the file's msgbuffer_mutex while
	// it registers or removes the watch with xenstored and waits for the
	// answer (xenbus_file_write -> xenbus_write_watch -> xs_talkv), and the
	// kernel's single xenbus thread takes that same mutex to hand over the
	// reply to any earlier request of the file (xenbus_dev_queue_reply).
	// If such a reply comes first, the thread blocks, the (UN)WATCH answer
	// behind it is never read, and every xenstore user of the domain hangs
	// in D state; seen in the lab (xenlab) with Linux 6.1 in a domU.
	// Ordinary requests hold it shared until their reply arrives; WATCH and
	// UNWATCH hold it exclusively. Unused for the daemon socket.
	gate sync.RWMutex

	// txStart keeps one TRANSACTION_START at a time in flight on the xenbus
	// device, from its write to its reply. Linux's xenbus_dev_frontend books
	// a transaction with id 0 at each TRANSACTION_START write and gives each
	// reply's id to the first such booking it finds (xenbus_dev_queue_reply),
	// and ends only the transactions it knows when the file closes;
	// libxenstore never has two requests of one handle in flight. In the lab
	// (Linux 6.1, both xenstoreds), many concurrent Listens in a domU left
	// transactions open in xenstored after the process exited, until the
	// domain's transaction quota was used up for good. Unused for the daemon
	// socket.
	txStart sync.Mutex

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
