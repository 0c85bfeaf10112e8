//go:build unix

package testutil

import (
	"os"
	"syscall"
)

// exitSignal returns the signal that ended a process, if one did.
func exitSignal(ps *os.ProcessState) (int, bool) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int(ws.Signal()), true
	}
	return 0, false
}
