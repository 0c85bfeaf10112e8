package testutil

import (
	"os"
	"runtime"
	"testing"
)

// maxRootLen is the longest temporary directory SocketDir makes its
// directories in. Below a directory of SocketDir go at most about 40
// bytes (the daemon's "dom32767/xenstored", a test's "front.sock"); a unix
// socket path has at most 107.
const maxRootLen = 60

// SocketDir returns a fresh directory with a short path, for unix sockets
// (such as the simulator daemon's), removed when the test ends. It is
// never under t.TempDir(), whose path grows with $TMPDIR and the test's
// name.
func SocketDir(tb testing.TB) string {
	tb.Helper()
	dir, err := NewSocketDir()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// NewSocketDir is SocketDir for a directory that outlives a test: the
// caller removes it. It is in os.TempDir() if that path is short, else in
// /tmp.
func NewSocketDir() (string, error) {
	root := os.TempDir()
	if len(root) > maxRootLen && runtime.GOOS != "windows" {
		root = "/tmp"
	}
	return os.MkdirTemp(root, "vt")
}
