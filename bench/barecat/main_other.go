//go:build !linux

// Command barecat needs Linux (futexes between processes).
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "barecat: needs Linux (shared futexes); this is %s\n", runtime.GOOS)
	os.Exit(1)
}
