package vchan

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestReadAndWriteBlockedAtOnce: a Read and a Write blocked on one Conn at
// once (its read ring empty, its write ring full). One event channel serves
// both: one of them waits in the channel's Wait, the other for a hand-off
// from it, and the event that frees the other must reach it. The simulated
// channel refuses a second concurrent Wait, so a Conn that let both wait on
// it fails here too.
func TestReadAndWriteBlockedAtOnce(t *testing.T) {
	_, srv, cli := connPair(t, 4096, 4096)
	for round := range 20 {
		msg := bytes.Repeat([]byte{byte(round)}, 3*4096) // more than the ring holds
		wrote := make(chan error, 1)
		go func() {
			_, err := srv.Write(msg)
			wrote <- err
		}()
		read := make(chan error, 1)
		reply := make([]byte, 5)
		go func() {
			_, err := io.ReadFull(srv, reply)
			read <- err
		}()
		got := make([]byte, len(msg))
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: the client read %v (equal %t)", round, err, bytes.Equal(got, msg))
		}
		if err := <-wrote; err != nil {
			t.Fatalf("round %d: blocked Write: %v", round, err)
		}
		if _, err := cli.Write([]byte("reply")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-read:
			if err != nil || string(reply) != "reply" {
				t.Fatalf("round %d: blocked Read = %q, %v", round, reply, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the blocked Read missed its event", round)
		}
	}
}
