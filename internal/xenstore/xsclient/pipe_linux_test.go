package xsclient

import (
	"net"
	"os"
	"syscall"
)

// pipePair returns the two ends of a connected unix socket pair.
func pipePair() (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	conv := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			panic(err)
		}
		return c
	}
	return conv(fds[0]), conv(fds[1])
}
