package xsclient

import (
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore/xswire"
)

// FuzzClientReader has a hostile daemon answer a READ with arbitrary bytes
// and hang up: the call must return, whatever it returns, and Close must
// leave nothing running.
func FuzzClientReader(f *testing.F) {
	msg := func(m xswire.Message) []byte { b, _ := xswire.AppendMessage(nil, m); return b }
	f.Add(msg(xswire.Message{Type: xswire.Read, ReqID: 1, Payload: []byte("v")}))
	f.Add(msg(xswire.Message{Type: xswire.Error, ReqID: 1, Payload: []byte("EACCES\x00")}))
	f.Add(msg(xswire.Message{Type: xswire.WatchEvent, Payload: []byte("/a\x00xsclient-1\x00")}))
	f.Add(msg(xswire.Message{Type: xswire.Read, ReqID: 0, Payload: []byte("OK\x00")}))
	f.Add(xswire.AppendHeader(nil, xswire.Header{Type: xswire.Read, ReqID: 1, Len: 0xffffffff}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := pipePair()
		c := NewClient(a, 0)
		go func() {
			_, _ = xswire.ReadMessage(b, xswire.PayloadMax)
			_, _ = b.Write(data)
			b.Close()
		}()
		done := make(chan struct{})
		go func() {
			_, _ = c.Read("/a")
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("call hung")
		}
		c.Close()
	})
}
