package vchan

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/ring"
)

// indexAtNotify wraps a Conn's channel and records, at each Notify, a ring
// index of this end read from the shared page by the notifying goroutine
// (the index it owns, so the peer cannot move it meanwhile).
type indexAtNotify struct {
	evtchn.Channel
	page   []byte
	offset int
	at     []uint32
}

func (r *indexAtNotify) Notify() error {
	r.at = append(r.at, binary.LittleEndian.Uint32(r.page[r.offset:]))
	return r.Channel.Notify()
}

// waitRequest waits (bounded) until bit is requested in the notify byte at
// offset of c's shared page: the peer is about to sleep, or asleep.
func waitRequest(t *testing.T, c *Conn, offset int, bit uint8) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); c.page()[offset]&bit == 0; {
		if time.Now().After(end) {
			t.Fatalf("the peer never asked for an event (bit %#x at %d)", bit, offset)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOneEventPerBatch: a peer asleep on an event is woken once a Write or
// a Read has moved all it will move (the ring full or the call done), not
// after its first chunk, which would have it wake to a quarter of the data
// and sleep again.
func TestOneEventPerBatch(t *testing.T) {
	const size = 65536 // four chunks
	_, srv, cli := connPair(t, size, size)
	srv.SetSpinWait(0)
	cli.SetSpinWait(0)
	page := cli.page()
	// The client writes the left ring (producer index at 4), the server
	// reads it (consumer index at 0); the server asks for events in byte
	// 22, the client in byte 23.
	const leftCons, leftProd, cliNotify, srvNotify = 0, 4, 22, 23
	start := binary.LittleEndian.Uint32(page[leftProd:])

	t.Run("write", func(t *testing.T) {
		read := make(chan error, 1)
		buf := make([]byte, size)
		go func() { _, err := io.ReadFull(srv, buf); read <- err }()
		waitRequest(t, cli, cliNotify, ring.NotifyWrite)
		rec := &indexAtNotify{Channel: cli.ch, page: page, offset: leftProd}
		cli.ch = rec
		if _, err := cli.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		cli.ch = rec.Channel
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		if len(rec.at) != 1 || rec.at[0]-start != size {
			t.Fatalf("events sent by a %d-byte Write to a sleeping reader, at producer offsets %v; want one, after all %d bytes", size, offsets(rec.at, start), size)
		}
	})

	t.Run("read", func(t *testing.T) {
		cons := binary.LittleEndian.Uint32(page[leftCons:])
		if _, err := cli.Write(make([]byte, size)); err != nil { // the ring is full
			t.Fatal(err)
		}
		wrote := make(chan error, 1)
		go func() { _, err := cli.Write([]byte{1}); wrote <- err }()
		srvPage := srv.page()
		waitRequest(t, srv, srvNotify, ring.NotifyRead)
		rec := &indexAtNotify{Channel: srv.ch, page: srvPage, offset: leftCons}
		srv.ch = rec
		if _, err := io.ReadFull(srv, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		srv.ch = rec.Channel
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		if len(rec.at) != 1 || rec.at[0]-cons != size {
			t.Fatalf("events sent by a %d-byte Read to a sleeping writer, at consumer offsets %v; want one, after all %d bytes", size, offsets(rec.at, cons), size)
		}
	})
}

func offsets(at []uint32, from uint32) []uint32 {
	var d []uint32
	for _, a := range at {
		d = append(d, a-from)
	}
	return d
}
