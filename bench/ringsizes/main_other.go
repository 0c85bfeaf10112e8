//go:build !linux

// Command ringsizes needs the cross-process simulator, which needs Linux.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "ringsizes: needs Linux (the vchan-simd daemon: memfd, SCM_RIGHTS); this is %s\n", runtime.GOOS)
	os.Exit(1)
}
