//go:build !linux

package xsclient

import "net"

// pipePair returns the two ends of a connected TCP loopback connection: a
// buffered stream like the unix socket pair used on Linux, where
// socketpair's flags differ or it does not exist.
func pipePair() (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	b, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	return a, b
}
