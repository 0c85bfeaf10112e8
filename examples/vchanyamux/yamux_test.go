package vchanyamux

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/vchan-go/vchan/examples/internal/testenv"
)

const (
	streams    = 100
	streamSize = 64 << 10
)

// reply is what the server sends back on each stream: the stream's number
// (the first 8 bytes it read), the byte count and the SHA-256 of all it
// read before EOF.
type reply struct {
	id, n uint64
	sum   [32]byte
}

func (r reply) marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, r.id)
	b = binary.BigEndian.AppendUint64(b, r.n)
	return append(b, r.sum[:]...)
}

func unmarshal(b []byte) reply {
	var r reply
	r.id = binary.BigEndian.Uint64(b)
	r.n = binary.BigEndian.Uint64(b[8:])
	copy(r.sum[:], b[16:])
	return r
}

// payload is what stream id sends: its number, then pseudo-random bytes
// of its own, 64 KiB in all.
func payload(id uint64) []byte {
	b := testenv.Data(id+1, streamSize)
	binary.BigEndian.PutUint64(b, id)
	return b
}

// TestYamux: one vchan connection with 64 KiB rings, a yamux session on
// each end, and 100 streams at once. Each stream's sender writes 64 KiB of
// its own data and closes (a half-close); the receiver reads to EOF and
// writes back the count and checksum, which the sender checks.
func TestYamux(t *testing.T) {
	testenv.CheckGoroutines(t)
	p := testenv.InProcess(t)
	ctx := testenv.Context(t, time.Minute)
	dl, _ := ctx.Deadline()

	srvConn, cliConn := p.Connect(t, ctx, "yamux", 65536)

	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false // nothing idles here; keeps the goroutine count exact
	srvSess, err := yamux.Server(srvConn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srvSess.Close()
	cliSess, err := yamux.Client(cliConn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cliSess.Close()

	// Server: for each stream, read to EOF, then reply and close.
	type result struct {
		id  uint64
		err error
	}
	served := make(chan result, streams)
	go func() {
		for range streams {
			s, err := srvSess.AcceptStream()
			if err != nil {
				served <- result{err: fmt.Errorf("AcceptStream: %w", err)}
				return
			}
			go func() {
				id, err := serve(s, dl)
				served <- result{id, err}
			}()
		}
	}()

	// Client: 100 streams at once.
	sent := make(chan error, streams)
	for id := range uint64(streams) {
		go func() { sent <- send(cliSess, id, dl) }()
	}
	for range streams {
		if err := testenv.Wait(t, ctx, sent, "the senders"); err != nil {
			t.Error(err)
		}
	}
	seen := make(map[uint64]bool)
	for range streams {
		r := testenv.Wait(t, ctx, served, "the server's streams")
		switch {
		case r.err != nil:
			t.Error(r.err)
		case r.id >= streams || seen[r.id]:
			t.Errorf("the server got stream number %d twice or out of range", r.id)
		}
		seen[r.id] = true
	}
	if t.Failed() {
		return
	}
	// Every stream was closed by both ends: both sessions forget them.
	for deadline := time.Now().Add(5 * time.Second); cliSess.NumStreams()+srvSess.NumStreams() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("streams left open: client %d, server %d", cliSess.NumStreams(), srvSess.NumStreams())
		}
	}
	// Closing the client session closes its vchan; the server session
	// sees the vchan end and shuts down too.
	if err := cliSess.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srvSess.CloseChan():
	case <-ctx.Done():
		t.Fatal("the server session did not notice the client closing the vchan")
	}
	srvConn.Close()
	p.CheckReleased(t)
}

// send writes stream id's payload, half-closes, and checks the reply.
func send(sess *yamux.Session, id uint64, dl time.Time) error {
	s, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("stream %d: open: %w", id, err)
	}
	defer s.Close()
	s.SetDeadline(dl)
	data := payload(id)
	if _, err := s.Write(data); err != nil {
		return fmt.Errorf("stream %d: write: %w", id, err)
	}
	if err := s.Close(); err != nil { // FIN: the server reads EOF
		return fmt.Errorf("stream %d: close: %w", id, err)
	}
	if _, err := s.Write([]byte{0}); !errors.Is(err, yamux.ErrStreamClosed) {
		return fmt.Errorf("stream %d: a write after Close returned %v, want yamux.ErrStreamClosed", id, err)
	}
	b, err := io.ReadAll(s) // the reply, then the server's FIN
	if err != nil {
		return fmt.Errorf("stream %d: reading the reply after Close: %w", id, err)
	}
	if len(b) != 48 {
		return fmt.Errorf("stream %d: a %d-byte reply, want 48", id, len(b))
	}
	want := reply{id: id, n: uint64(len(data)), sum: sha256.Sum256(data)}
	if got := unmarshal(b); got != want {
		return fmt.Errorf("stream %d: the server read %d bytes of stream %d with SHA-256 %x; sent %d bytes with %x",
			id, got.n, got.id, got.sum, want.n, want.sum)
	}
	return nil
}

// serve reads a stream to EOF and replies with what it read; it returns
// the stream's number.
func serve(s net.Conn, dl time.Time) (uint64, error) {
	defer s.Close()
	s.SetDeadline(dl)
	h := sha256.New()
	var head [8]byte
	if _, err := io.ReadFull(s, head[:]); err != nil {
		return 0, fmt.Errorf("server: reading a stream's number: %w", err)
	}
	h.Write(head[:])
	n, err := io.Copy(h, s)
	if err != nil {
		return 0, fmt.Errorf("server: stream %d: reading after %d bytes: %w", binary.BigEndian.Uint64(head[:]), 8+n, err)
	}
	r := reply{id: binary.BigEndian.Uint64(head[:]), n: uint64(8 + n)}
	h.Sum(r.sum[:0])
	if _, err := s.Write(r.marshal()); err != nil {
		return 0, fmt.Errorf("server: stream %d: writing the reply after EOF: %w", r.id, err)
	}
	return r.id, nil
}
