// Package guesttest holds tests that need a real Xen domain: xenstore over
// the daemon socket and over /dev/xen/xenbus, and net.Conn conformance
// (nettest.TestConn) of vchan.XenHost within one domain. xenlab/run.sh
// compiles them on the build machine (go test -c) and runs the binary in the
// lab's dom0 and domU. Elsewhere every test skips, saying what it lacks.
package guesttest
