//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

// Every figure comes from peers on the vchan-simd daemon (or Debian's
// libxenvchan through it), which needs Linux.
func main() {
	fmt.Fprintf(os.Stderr, "vchanbench: needs Linux (the vchan-simd daemon: memfd, SCM_RIGHTS; Debian's libxenvchan); this is %s\n", runtime.GOOS)
	os.Exit(1)
}
