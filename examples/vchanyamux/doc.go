// Package vchanyamux shows many streams multiplexed over one vchan with
// github.com/hashicorp/yamux. A Listener serves one connection per ring
// pair, and every ring pair costs grants; a multiplexer gives a program as
// many independent streams as it wants over a single connection. The
// package has no code of its own; its tests are the example.
//
// Why hashicorp/yamux: it is the multiplexer of Consul, Nomad, Vault and
// go-plugin, kept by HashiCorp, small (no dependencies), with per-stream
// flow control and half-close, and it asks nothing of the connection but
// io.ReadWriteCloser.
//
// Half-close: yamux's Stream.Close is a half-close. It sends FIN and stops
// further writes (ErrStreamClosed), but the stream can still read: the
// peer's Read returns io.EOF once it has read everything, the peer can
// still write back, and its Close ends the stream. There is no CloseWrite;
// Close is that. (Seen in yamux v0.1.2 stream.go: state streamLocalClose
// "only prohibits further local writes".)
package vchanyamux
