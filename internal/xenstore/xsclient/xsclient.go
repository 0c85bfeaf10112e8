// Package xsclient is a xenstore client speaking the wire protocol
// (docs/PROTOCOL.md §13) over xenstored's unix socket or the /dev/xen/xenbus
// device. It implements xenstore.Client.
//
// Requests may be issued from many goroutines at once: each carries its own
// req_id, and one reader goroutine per connection hands every reply to the
// request it answers and every WATCH_EVENT to the watch its token names.
package xsclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

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

// eventBuffer is how many undelivered events a watch holds before it starts
// coalescing them.
const eventBuffer = 32

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
		if t == xswire.Watch || t == xswire.Unwatch {
			c.gate.Lock()
			defer c.gate.Unlock()
		} else {
			c.gate.RLock()
			defer c.gate.RUnlock()
		}
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
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, opErr(op, path, err)
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

// Begin starts a transaction.
func (c *Client) Begin() (xenstore.Tx, error) {
	r, err := c.request(xswire.TransactionStart, 0, "", []byte{0})
	if err != nil {
		return nil, err
	}
	ss, err := xswire.ExactStrings(r, 1)
	var id uint64
	if err == nil {
		id, err = strconv.ParseUint(ss[0], 10, 32)
	}
	if err != nil || id == 0 {
		return nil, opErr("transaction_start", "", fmt.Errorf("%w: malformed transaction id %q", syscall.EBADMSG, r))
	}
	return &tx{c: c, id: uint32(id)}, nil
}

// tx is an open transaction, identified by the tx_id of its requests.
type tx struct {
	c    *Client
	id   uint32
	mu   sync.Mutex
	done bool
}

func (t *tx) check(op, path string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return opErr(op, path, fmt.Errorf("%w: transaction already ended", syscall.EINVAL))
	}
	return nil
}

// Read returns the value of a node as the transaction sees it.
func (t *tx) Read(path string) ([]byte, error) {
	if err := t.check("read", path); err != nil {
		return nil, err
	}
	return t.c.read(t.id, path)
}

// Write sets the value of a node within the transaction.
func (t *tx) Write(path string, value []byte) error {
	if err := t.check("write", path); err != nil {
		return err
	}
	return t.c.write(t.id, path, value)
}

// Mkdir creates a node within the transaction.
func (t *tx) Mkdir(path string) error {
	if err := t.check("mkdir", path); err != nil {
		return err
	}
	return t.c.simple(xswire.Mkdir, t.id, path)
}

// Rm removes a node and everything below it within the transaction.
func (t *tx) Rm(path string) error {
	if err := t.check("rm", path); err != nil {
		return err
	}
	return t.c.simple(xswire.Rm, t.id, path)
}

// Directory lists a node's children as the transaction sees them.
func (t *tx) Directory(path string) ([]string, error) {
	if err := t.check("directory", path); err != nil {
		return nil, err
	}
	return t.c.directory(t.id, path)
}

// GetPerms returns a node's permissions as the transaction sees them.
func (t *tx) GetPerms(path string) ([]xenstore.Perm, error) {
	if err := t.check("get_perms", path); err != nil {
		return nil, err
	}
	return t.c.getPerms(t.id, path)
}

// SetPerms replaces a node's permissions within the transaction.
func (t *tx) SetPerms(path string, perms []xenstore.Perm) error {
	if err := t.check("set_perms", path); err != nil {
		return err
	}
	return t.c.setPerms(t.id, path, perms)
}

// Commit ends the transaction, applying its writes; a conflict fails with
// an error wrapping syscall.EAGAIN.
func (t *tx) Commit() error { return t.end("T") }

// Abort ends the transaction, discarding its writes.
func (t *tx) Abort() error { return t.end("F") }

func (t *tx) end(arg string) error {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return opErr("transaction_end", "", fmt.Errorf("%w: transaction already ended", syscall.EINVAL))
	}
	t.done = true
	t.mu.Unlock()
	_, err := t.c.request(xswire.TransactionEnd, t.id, "", append([]byte(arg), 0))
	return err
}

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

// Interface checks.
var (
	_ xenstore.Client = (*Client)(nil)
	_ xenstore.Tx     = (*tx)(nil)
	_ xenstore.Watch  = (*watch)(nil)
)
