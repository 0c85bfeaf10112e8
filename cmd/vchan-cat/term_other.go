//go:build !linux

package main

import "os"

// isTerminal reports whether fd, a standard descriptor, is a character
// device: the portable approximation of a terminal check (the termios
// ioctl's name differs between systems, and Windows has none).
func isTerminal(fd int) bool {
	f := [...]*os.File{os.Stdin, os.Stdout, os.Stderr}
	if fd < 0 || fd >= len(f) {
		return false
	}
	fi, err := f[fd].Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
