package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/vchan-go/vchan/vchan"
)

// scenarioMessage returns message i of the close-after-write scenario for a
// ring of ring bytes: one ring, two rings, up to three rings and up to 100
// bytes in turn, the bytes from a xorshift generator seeded with i. It is
// the sequence of vchan-ref.c's scenario_message, so that either side can
// check what the other sent.
func scenarioMessage(i uint32, ring int) []byte {
	x := i*2654435761 + 1
	next := func() uint32 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		return x
	}
	var n int
	switch i % 4 {
	case 0:
		n = ring
	case 1:
		n = 2 * ring
	case 2:
		n = 1 + int(next()%uint32(3*ring))
	default:
		n = 1 + int(next()%100)
	}
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(next())
	}
	return b
}

// closeAfterWrite runs the formal specification's "sender closes right
// after writing" scenario n times, on PATH-PREFIX-0, -1, ... (args: send|recv
// server|client PEER-DOMID PATH-PREFIX [RING-BYTES]): the sending side
// writes the message and closes at once, without Flush; the receiving side
// reads until io.EOF and compares.
func closeAfterWrite(n int, args []string, dialTimeout time.Duration) error {
	if len(args) < 4 || len(args) > 5 || (args[0] != "send" && args[0] != "recv") || (args[1] != "server" && args[1] != "client") {
		return fmt.Errorf("usage: vchanpeer -close-after-write N send|recv server|client PEER-DOMID PATH-PREFIX [RING-BYTES]")
	}
	send, server := args[0] == "send", args[1] == "server"
	peer, err := strconv.ParseUint(args[2], 10, 16)
	if err != nil {
		return fmt.Errorf("peer domid: %v", err)
	}
	ring := 4096
	if len(args) == 5 {
		if ring, err = strconv.Atoi(args[4]); err != nil {
			return fmt.Errorf("ring bytes: %v", err)
		}
	}
	host, err := vchan.DefaultHost()
	if err != nil {
		return err
	}
	cfg := &vchan.Config{Host: host, ReadBufferSize: ring, WriteBufferSize: ring, WaitForServer: true}
	for i := range n {
		path := fmt.Sprintf("%s-%d", args[3], i)
		want := scenarioMessage(uint32(i), ring)
		var c *vchan.Conn
		if server {
			ln, err := vchan.Listen(uint16(peer), path, cfg)
			if err != nil {
				return fmt.Errorf("connection %d: listen: %v", i, err)
			}
			c, err = ln.AcceptVchan()
			ln.Close()
			if err != nil {
				return fmt.Errorf("connection %d: accept: %v", i, err)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
			c, err = vchan.DialContext(ctx, uint16(peer), path, cfg)
			cancel()
			if err != nil {
				return fmt.Errorf("connection %d: dial: %v", i, err)
			}
		}
		c.SetDeadline(time.Now().Add(dialTimeout))
		if send {
			_, err := c.Write(want)
			c.Close() // right after the write
			if err != nil {
				return fmt.Errorf("connection %d: write: %v", i, err)
			}
			continue
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("connection %d: received %d bytes, want %d (equal prefix: %v), then %v",
				i, len(got), len(want), bytes.HasPrefix(want, got), err)
		}
	}
	return nil
}
