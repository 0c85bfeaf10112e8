// Package xsserver serves the xenstore wire protocol (docs/PROTOCOL.md §13) over
// unix sockets, backed by an in-memory *xssim.Store. libxenstore-based
// tools (xenstore-read, xenstore-write, ...) reach it with XENSTORED_PATH
// set to the socket, and so does package xsclient.
//
// Each connection gets its own store Session, as the domain domidOf names.
// Requests are answered in order; watch events are queued to the
// connection's writer, and a client that lets that queue fill up is
// disconnected rather than allowed to stall the store.
package xsserver

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xssim"
	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// EventQueueLimit is how many watch events may wait for a connection's
// writer; one more and the connection is closed.
const EventQueueLimit = 1024

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("xsserver: server closed")

// Server serves one Store to any number of connections.
type Server struct {
	store   *xssim.Store
	domidOf func(*net.UnixConn) (uint16, error)

	mu        sync.Mutex
	closed    bool
	listeners map[*net.UnixListener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // one per connection goroutine
}

// New returns a server for store. domidOf names the domain a new
// connection acts as; when nil, every connection is domain 0, the
// privileged control domain, as C xenstored treats its socket clients.
// A connection for which domidOf fails is closed.
func New(store *xssim.Store, domidOf func(conn *net.UnixConn) (uint16, error)) *Server {
	if domidOf == nil {
		domidOf = func(*net.UnixConn) (uint16, error) { return 0, nil }
	}
	return &Server{
		store:     store,
		domidOf:   domidOf,
		listeners: make(map[*net.UnixListener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
}

// Serve accepts connections on l until Close, or until accepting fails. It
// takes ownership of l and always closes it. After Close it returns
// ErrServerClosed.
func (s *Server) Serve(l *net.UnixListener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		_ = l.Close()
	}()

	for {
		uc, err := l.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			return err
		}
		c := &conn{s: s, uc: uc, signal: make(chan struct{}, 1), stop: make(chan struct{})}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = uc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Close stops every Serve, closes every connection (their sessions end,
// aborting transactions and removing watches) and waits until all the
// server's goroutines have exited.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		_ = l.Close()
	}
	for c := range s.conns {
		_ = c.uc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// conn is one client connection.
type conn struct {
	s    *Server
	uc   *net.UnixConn
	sess *xssim.Session

	wmu sync.Mutex // serialises whole-message writes to uc

	qmu     sync.Mutex
	queue   []event
	qclosed bool
	signal  chan struct{} // capacity 1: the queue is non-empty
	stop    chan struct{} // closed when the writer must exit

	// Watches and transactions the client opened, for RESET_WATCHES.
	// Used by the reader goroutine only.
	watches map[[2]string]struct{}
	txs     map[uint32]struct{}
}

type event struct{ path, token string }

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	defer c.uc.Close()

	domid, err := c.s.domidOf(c.uc)
	if err != nil {
		return
	}
	c.watches = make(map[[2]string]struct{})
	c.txs = make(map[uint32]struct{})
	c.sess = c.s.store.NewSession(domid, c.deliver)

	var writerDone sync.WaitGroup
	writerDone.Add(1)
	go func() {
		defer writerDone.Done()
		c.writer()
	}()

	br := bufio.NewReaderSize(c.uc, xswire.HeaderSize+xswire.PayloadMax)
	for {
		// A payload over XENSTORE_PAYLOAD_MAX kills the connection
		// (xenstore.txt): ReadMessage refuses it before reading it.
		m, err := xswire.ReadMessage(br, xswire.PayloadMax)
		if err != nil {
			break
		}
		typ, payload := c.handle(m)
		if typ == xswire.Error && bytes.Equal(payload, errSessionGone) {
			// The store ended the session: its domain was released. As
			// C xenstored does with a released domain's connection, drop
			// the connection.
			break
		}
		if len(payload) > xswire.PayloadMax {
			typ, payload = xswire.Error, xswire.ErrorPayload(syscall.E2BIG)
		}
		if err := c.write(xswire.Message{Type: typ, ReqID: m.ReqID, TxID: m.TxID, Payload: payload}); err != nil {
			break
		}
	}

	_ = c.uc.Close()
	c.qmu.Lock()
	c.qclosed = true
	c.queue = nil
	c.qmu.Unlock()
	close(c.stop)
	c.sess.Close()
	writerDone.Wait()
}

func (c *conn) write(m xswire.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return xswire.WriteMessage(c.uc, m)
}

// deliver is the Session's event callback. It runs in whichever goroutine
// made the change, so it never blocks: it queues the event, or, when the
// client has let EventQueueLimit events pile up, closes the connection.
func (c *conn) deliver(path, token string) {
	c.qmu.Lock()
	if c.qclosed {
		c.qmu.Unlock()
		return
	}
	if len(c.queue) >= EventQueueLimit {
		c.qclosed = true
		c.queue = nil
		c.qmu.Unlock()
		_ = c.uc.Close() // the reader notices and cleans up
		return
	}
	c.queue = append(c.queue, event{path, token})
	c.qmu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// writer sends queued watch events, with req_id and tx_id 0.
func (c *conn) writer() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.signal:
		}
		c.qmu.Lock()
		q := c.queue
		c.queue = nil
		c.qmu.Unlock()
		for _, ev := range q {
			p, err := xswire.JoinStrings(ev.path, ev.token)
			if err != nil || len(p) > xswire.PayloadMax {
				continue // cannot be expressed on the wire
			}
			if err := c.write(xswire.Message{Type: xswire.WatchEvent, Payload: p}); err != nil {
				_ = c.uc.Close()
				return
			}
		}
	}
}

func errReply(e syscall.Errno) (xswire.Type, []byte) {
	return xswire.Error, xswire.ErrorPayload(e)
}

// errSessionGone is the reply payload marking a session the store closed;
// it never goes on the wire (ENOTCONN has no wire name).
var errSessionGone = []byte("ENOTCONN\x00")

// storeErr turns an error from the store into an ERROR reply.
func storeErr(err error) (xswire.Type, []byte) {
	var e syscall.Errno
	if !errors.As(err, &e) {
		e = syscall.EIO
	}
	if e == syscall.ENOTCONN {
		return xswire.Error, errSessionGone
	}
	return errReply(e)
}

func ok(t xswire.Type) (xswire.Type, []byte) { return t, xswire.OKPayload() }

// onearg returns the single NUL-terminated string a payload must be.
func onearg(p []byte) (string, bool) {
	ss, err := xswire.ExactStrings(p, 1)
	if err != nil {
		return "", false
	}
	return ss[0], true
}

// handle executes one request and returns the reply's type and payload.
func (c *conn) handle(m xswire.Message) (xswire.Type, []byte) {
	tx := m.TxID
	switch m.Type {
	case xswire.Read:
		path, good := onearg(m.Payload)
		if !good {
			return errReply(syscall.EINVAL)
		}
		v, err := c.sess.Read(tx, path)
		if err != nil {
			return storeErr(err)
		}
		if v == nil {
			v = []byte{}
		}
		return m.Type, v

	case xswire.Write:
		path, value, err := xswire.SplitPathValue(m.Payload)
		if err != nil {
			return errReply(syscall.EINVAL)
		}
		if err := c.sess.Write(tx, path, value); err != nil {
			return storeErr(err)
		}
		return ok(m.Type)

	case xswire.Mkdir, xswire.Rm:
		path, good := onearg(m.Payload)
		if !good {
			return errReply(syscall.EINVAL)
		}
		var err error
		if m.Type == xswire.Mkdir {
			err = c.sess.Mkdir(tx, path)
		} else {
			err = c.sess.Rm(tx, path)
		}
		if err != nil {
			return storeErr(err)
		}
		return ok(m.Type)

	case xswire.Directory:
		path, good := onearg(m.Payload)
		if !good {
			return errReply(syscall.EINVAL)
		}
		names, err := c.sess.Directory(tx, path)
		if err != nil {
			return storeErr(err)
		}
		p, err := xswire.JoinStrings(names...)
		if err != nil {
			return errReply(syscall.EIO)
		}
		return m.Type, p

	case xswire.GetPerms:
		path, good := onearg(m.Payload)
		if !good {
			return errReply(syscall.EINVAL)
		}
		perms, err := c.sess.GetPerms(tx, path)
		if err != nil {
			return storeErr(err)
		}
		return m.Type, xenstore.FormatPerms(perms)

	case xswire.SetPerms:
		ss, err := xswire.SplitStrings(m.Payload)
		if err != nil || len(ss) < 2 {
			return errReply(syscall.EINVAL)
		}
		perms := make([]xenstore.Perm, len(ss)-1)
		for i, s := range ss[1:] {
			if perms[i], err = xenstore.ParsePerm(s); err != nil {
				return errReply(syscall.EINVAL)
			}
		}
		if err := c.sess.SetPerms(tx, ss[0], perms); err != nil {
			return storeErr(err)
		}
		return ok(m.Type)

	case xswire.Watch:
		ss, err := xswire.SplitStrings(m.Payload)
		if err != nil || (len(ss) != 2 && len(ss) != 3) {
			return errReply(syscall.EINVAL)
		}
		if len(ss) == 3 {
			// A depth limit (WATCHDEPTH). Deeper events are spurious
			// ones, which the protocol allows, so it is checked and
			// then ignored.
			if _, err := strconv.ParseUint(ss[2], 10, 32); err != nil {
				return errReply(syscall.EINVAL)
			}
		}
		if err := c.sess.Watch(ss[0], ss[1]); err != nil {
			return storeErr(err)
		}
		c.watches[[2]string{ss[0], ss[1]}] = struct{}{}
		return ok(m.Type)

	case xswire.Unwatch:
		ss, err := xswire.ExactStrings(m.Payload, 2)
		if err != nil {
			return errReply(syscall.EINVAL)
		}
		if err := c.sess.Unwatch(ss[0], ss[1]); err != nil {
			return storeErr(err)
		}
		delete(c.watches, [2]string{ss[0], ss[1]})
		return ok(m.Type)

	case xswire.TransactionStart:
		// libxenstore sends one empty string; the content is ignored,
		// as C xenstored does, but it must be well formed.
		if _, err := xswire.SplitStrings(m.Payload); err != nil {
			return errReply(syscall.EINVAL)
		}
		if tx != 0 {
			return errReply(syscall.EBUSY) // no nested transactions
		}
		id, err := c.sess.TransactionStart()
		if err != nil {
			return storeErr(err)
		}
		c.txs[id] = struct{}{}
		return m.Type, append(strconv.AppendUint(nil, uint64(id), 10), 0)

	case xswire.TransactionEnd:
		arg, good := onearg(m.Payload)
		if !good || (arg != "T" && arg != "F") {
			return errReply(syscall.EINVAL)
		}
		err := c.sess.TransactionEnd(tx, arg == "T")
		delete(c.txs, tx)
		if err != nil {
			return storeErr(err)
		}
		return ok(m.Type)

	case xswire.GetDomainPath:
		arg, good := onearg(m.Payload)
		if !good {
			return errReply(syscall.EINVAL)
		}
		domid, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			return errReply(syscall.EINVAL)
		}
		return m.Type, append([]byte(c.sess.DomainPath(uint16(domid))), 0)

	case xswire.ResetWatches:
		// As C xenstored: drop all the connection's watches and
		// transactions.
		for w := range c.watches {
			_ = c.sess.Unwatch(w[0], w[1])
		}
		clear(c.watches)
		for id := range c.txs {
			_ = c.sess.TransactionEnd(id, false)
		}
		clear(c.txs)
		return ok(m.Type)

	case xswire.Introduce, xswire.Release:
		if c.sess.Domain() != 0 {
			return errReply(syscall.EACCES)
		}
		ss, err := xswire.SplitStrings(m.Payload)
		want := 1
		if m.Type == xswire.Introduce {
			want = 3 // domid, mfn, event channel
		}
		if err != nil || len(ss) != want {
			return errReply(syscall.EINVAL)
		}
		domid, err := strconv.ParseUint(ss[0], 10, 16)
		if err != nil {
			return errReply(syscall.EINVAL)
		}
		if m.Type == xswire.Introduce {
			err = c.s.store.IntroduceDomain(uint16(domid))
		} else {
			err = c.s.store.ReleaseDomain(uint16(domid))
		}
		if err != nil {
			return storeErr(err)
		}
		return ok(m.Type)
	}
	return errReply(syscall.ENOSYS)
}
